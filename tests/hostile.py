"""Demo data with hostile strings planted, for the rendered-report tests.

Text that comes from data is shown to stakeholders in tables, chart labels and
tooltips. :func:`hostile_copy` copies a dataset folder and, in one market,
renames every delivery site to an HTML/JS injection string (in ``decisions`` and
``staffing``, so both tables still agree) and rewrites two event descriptions.
Vendors are left alone so that the market's vendor parameters still match, and
every planted value is a plain string, so the data contract still holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["HOSTILE_EVENTS", "HOSTILE_MARKET", "HOSTILE_SITES", "HOSTILE_STRINGS", "hostile_copy"]

#: The market whose data is made hostile.
HOSTILE_MARKET = "ID"
#: Site → hostile site name, for every site of :data:`HOSTILE_MARKET` (so any sentence,
#: table or chart naming a site of that market names a hostile one).
HOSTILE_SITES = {
    "VendorA-Jakarta": "<script>alert(1)</script>",
    "VendorC-HCMC": "<img src=x onerror=alert(2)>",
    "VendorC-Jakarta": '"><svg onload=alert(3)>',
}
#: New descriptions of the first events of :data:`HOSTILE_MARKET`.
HOSTILE_EVENTS = ("</script><script>alert(4)</script>", "<iframe src=javascript:alert(5)>")
HOSTILE_STRINGS = (*HOSTILE_SITES.values(), *HOSTILE_EVENTS)


def _rename_sites(table: pa.Table) -> tuple[pa.Table, int]:
    in_market = pc.equal(table["market"], HOSTILE_MARKET)
    site = table["site"]
    changed = 0
    for old, new in HOSTILE_SITES.items():
        hit = pc.and_(in_market, pc.equal(site, old))
        changed += pc.sum(hit).as_py() or 0
        site = pc.if_else(hit, pa.scalar(new, site.type), site)
    index = table.schema.get_field_index("site")
    return table.set_column(index, table.schema.field(index), site), changed


def _rewrite_file(path: Path, rewrite) -> int:
    table = pq.read_table(path)
    new, changed = rewrite(table)
    if changed:
        pq.write_table(new, path)
    return changed


def _rewrite_events(table: pa.Table) -> tuple[pa.Table, int]:
    description = table["description"].to_pylist()
    rows = [i for i, m in enumerate(table["market"].to_pylist()) if m == HOSTILE_MARKET]
    for i, text in zip(rows, HOSTILE_EVENTS, strict=False):
        description[i] = text
    index = table.schema.get_field_index("description")
    column = pa.array(description, type=table.schema.field(index).type)
    return table.set_column(index, table.schema.field(index), column), min(
        len(rows), len(HOSTILE_EVENTS)
    )


def hostile_copy(source: Path, dest: Path) -> Path:
    """Copy the dataset folder ``source`` to ``dest`` with hostile strings planted.

    Idempotent: an existing complete copy at ``dest`` is reused.

    Raises
    ------
    ValueError
        When ``source`` lacks the sites or events to rewrite (the demo data changed).
    """
    done = dest / ".hostile-complete"
    if done.exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    sites = sum(_rewrite_file(p, _rename_sites) for p in sorted(dest.glob("decisions/*.parquet")))
    staffing = _rewrite_file(dest / "staffing.parquet", _rename_sites)
    events = _rewrite_file(dest / "events.parquet", _rewrite_events)
    if not sites or not staffing or events < len(HOSTILE_EVENTS):
        raise ValueError(
            f"could not plant the hostile strings in {source}: renamed {sites} decisions and "
            f"{staffing} staffing rows, rewrote {events} events of market {HOSTILE_MARKET}"
        )
    done.touch()
    return dest
