"""Static files that live inside installed Python packages, served and collected like our own.

The charts' library is plotly.js as the plotly package ships it (`plotly/package_data/plotly.min.js`): no
CDN, and the version moves with the package pinned in pyproject.toml. Only the named files are exposed,
not the rest of the package's data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

#: URL path under STATIC_URL → the file in a package.
VENDOR_FILES: dict[str, Path] = {
    "vendor/plotly.min.js": Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js",
}


class VendorFinder(BaseFinder):
    """Finds VENDOR_FILES for runserver's static view and for collectstatic."""

    def check(self, **kwargs: Any) -> list:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> str | list[str] | None:
        found = VENDOR_FILES.get(path)
        if found is None or not found.is_file():
            return [] if find_all else None
        return [str(found)] if find_all else str(found)

    def list(self, ignore_patterns: Any) -> Any:
        for path, source in VENDOR_FILES.items():
            storage = FileSystemStorage(location=str(source.parent))
            storage.prefix = str(Path(path).parent)
            yield source.name, storage
