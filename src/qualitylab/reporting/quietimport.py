"""Import-time workarounds shared by the modules that need them."""

from __future__ import annotations

import sys

__all__ = ["import_jsonschema_quietly"]


def import_jsonschema_quietly() -> None:
    """Import jsonschema without its optional ``rfc3987_syntax`` format checker.

    jsonschema (imported by altair and nbformat) loads ``rfc3987_syntax`` when
    it is installed (Jupyter pulls it in), and that compiles a Lark grammar at
    import: about 2.5 s of every kernel start. qualitylab never validates IRI
    formats, so the module is hidden while jsonschema loads and restored
    afterwards. Nothing changes when either was already imported.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        import jsonschema  # noqa: F401
    finally:
        del sys.modules["rfc3987_syntax"]
