from django.apps import AppConfig


class SalesforceConfig(AppConfig):
    """The Salesforce outbox, its drain (claiming, sending, conversion) and the simple-salesforce adapter.

    The label stays ``sync`` (the app's name before it had a package of its own): its tables,
    migration history, permissions, role grants and admin addresses keep their names.
    """

    name = "salesforce"
    label = "sync"
    verbose_name = "Salesforce sync"
