"""The rep settings page (/reps/settings/) through the test client, and the same settings in the admin."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from django.test import Client

from alerts.models import Rep
from tests.reps.conftest import make_user

pytestmark = pytest.mark.django_db

URL = "/reps/settings/"


def form_data(**changes: Any) -> dict[str, Any]:
    """A complete, valid submission (checkboxes: present means on), with `changes` on top."""
    data = {
        "email_on": "on",
        "slack_on": "on",
        "slack_member_id": "",
        "delivery": "instant",
        "digest_hour": "",
        "time_zone": "Europe/Berlin",
        "quiet_start": "",
        "quiet_end": "",
        "away_from": "",
        "away_until": "",
        "backup": "",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def test_anonymous_visitors_are_sent_to_the_login_and_strangers_are_refused(client: Client, world):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/reps/settings/")
    client.force_login(world.stranger)
    assert client.get(URL).status_code == 403


def test_a_rep_saves_their_settings(client: Client, world):
    bo_rep = Rep.objects.create(user=world.bo)
    client.force_login(world.ann)
    page = client.get(URL)
    assert page.status_code == 200
    assert b'aria-current="page">Settings' in page.content

    response = client.post(
        URL,
        form_data(
            email_on=None,  # unchecked
            delivery="digest",
            digest_hour="7",
            time_zone="America/New_York",
            quiet_start="21:30",
            quiet_end="07:00",
            away_from="2026-12-20",
            away_until="2027-01-03",
            backup=str(bo_rep.pk),
        ),
    )

    assert response.status_code == 302 and response["Location"] == URL
    rep = Rep.objects.get(user=world.ann)
    assert (rep.email_on, rep.slack_on, rep.delivery, rep.digest_hour, rep.time_zone) == (
        False,
        True,
        "digest",
        7,
        "America/New_York",
    )
    assert (rep.quiet_start, rep.quiet_end) == (time(21, 30), time(7, 0))
    assert (rep.away_from, rep.away_until, rep.backup) == (date(2026, 12, 20), date(2027, 1, 3), bo_rep)
    assert "Settings saved." in client.get(URL).content.decode()


def test_a_rep_cannot_send_their_alerts_to_another_address(client: Client, world):
    """Alerts carry customer details: only an admin sets where they go."""
    client.force_login(world.ann)
    page = client.get(URL).content.decode()
    assert "Alert emails go to <strong>ann@example.com</strong>" in page and 'name="email"' not in page

    client.post(URL, form_data(email="ann.private@elsewhere.example"))

    assert Rep.objects.get(user=world.ann).address == "ann@example.com"


def test_a_rep_edits_only_their_own_row(client: Client, world):
    bo_rep = Rep.objects.create(user=world.bo, time_zone="UTC")
    client.force_login(world.ann)

    client.post(URL, form_data(user=str(world.bo.pk), active="", pk=str(bo_rep.pk), time_zone="Asia/Tokyo"))

    bo_rep.refresh_from_db()
    ann_rep = Rep.objects.get(user=world.ann)
    assert (bo_rep.user, bo_rep.time_zone) == (world.bo, "UTC")
    assert (ann_rep.time_zone, ann_rep.active) == ("Asia/Tokyo", True)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone", "is not an IANA time zone"),
        ({"quiet_start": "22:00"}, "quiet_end", "both the start and the end of quiet hours"),
        ({"quiet_start": "22:00", "quiet_end": "22:00"}, "quiet_end", "different time"),
        ({"quiet_start": "25:00", "quiet_end": "07:00"}, "quiet_start", "valid time"),
        ({"away_from": "2026-12-20", "away_until": "2026-12-19", "backup": "BO"}, "away_until", "cannot be before"),
        ({"away_from": "2026-12-20", "away_until": "2026-12-21"}, "backup", "Name a backup rep"),
        ({"away_until": "2026-12-21", "backup": "BO"}, "away_from", "first and the last day away"),
        ({"digest_hour": "24"}, "digest_hour", "valid choice"),
        ({"backup": "SELF"}, "backup", "valid choice"),
    ],
)
def test_invalid_settings_are_named_per_field_and_change_nothing(client: Client, world, changes, field, message):
    bo_rep = Rep.objects.create(user=world.bo)
    ann_rep = Rep.objects.get(user=world.ann)
    substitutes = {"BO": str(bo_rep.pk), "SELF": str(ann_rep.pk)}
    client.force_login(world.ann)

    response = client.post(URL, form_data(**{k: substitutes.get(v, v) for k, v in changes.items()}))

    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field]
    assert message in " ".join(form.errors[field])
    html = response.content.decode()
    assert f'id="id_{field}_errors"' in html and "Nothing was saved" in html
    assert f'href="#id_{field}"' in html
    ann_rep.refresh_from_db()
    assert (ann_rep.time_zone, ann_rep.quiet_start, ann_rep.away_from) == ("UTC", None, None)


def test_a_rep_by_group_gets_their_row_when_they_first_save(client: Client, world):
    client.force_login(world.bo)
    assert client.get(URL).status_code == 200
    assert not Rep.objects.filter(user=world.bo).exists(), "visiting creates nothing"

    client.post(URL, form_data(time_zone="Europe/Paris"))

    assert Rep.objects.get(user=world.bo).time_zone == "Europe/Paris"


def test_an_admin_who_is_no_rep_has_no_settings_here(client: Client, world):
    client.force_login(world.admin)
    page = client.get(URL)
    assert page.status_code == 200 and "you have no rep profile" in page.content.decode()
    client.post(URL, form_data())
    assert not Rep.objects.filter(user=world.admin).exists(), "an admin is not made a rep (nor put in round robin)"


def test_the_backup_choices_are_other_active_reps(client: Client, world):
    bo_rep = Rep.objects.create(user=world.bo)
    gone = Rep.objects.create(user=make_user("gone"), active=False)
    client.force_login(world.ann)
    choices = list(client.get(URL).context["form"].fields["backup"].queryset)
    assert choices == [bo_rep] and gone not in choices


# --- the admin ----------------------------------------------------------------------------------------------


def admin_data(rep: Rep, **changes: Any) -> dict[str, Any]:
    data = form_data(user=str(rep.user_id), active="on", email="", **changes)
    data.update({f"territories-{k}": v for k, v in {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0}.items()})
    return data


def test_admins_edit_the_same_settings_with_the_same_checks(admin_client: Client, world):
    ann_rep = Rep.objects.get(user=world.ann)
    bo_rep = Rep.objects.create(user=world.bo)
    change = f"/admin/alerts/rep/{ann_rep.pk}/change/"
    page = admin_client.get(change)
    assert page.status_code == 200
    for name in ("email", "email_on", "slack_on", "time_zone", "quiet_start", "digest_hour", "away_from", "backup"):
        assert f'name="{name}"' in page.content.decode(), name
    assert admin_client.get("/admin/alerts/rep/").status_code == 200

    refused = admin_client.post(change, admin_data(ann_rep, time_zone="Nowhere/Else", away_from="2026-12-20"))
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert set(errors) == {"time_zone", "away_until", "backup"}

    saved = admin_client.post(
        change,
        admin_data(ann_rep, slack_on=None, away_from="2026-12-20", away_until="2026-12-24", backup=str(bo_rep.pk)),
    )
    assert saved.status_code == 302
    ann_rep.refresh_from_db()
    assert (ann_rep.slack_on, ann_rep.away_until, ann_rep.backup) == (False, date(2026, 12, 24), bo_rep)
