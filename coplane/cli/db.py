"""`coplane db`: the database schema."""

from __future__ import annotations

import typer

from coplane.cli.common import load_settings, out

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to the database COPLANE_DATABASE_URL names."""
    from coplane.server import ensure_sqlite_folder
    from coplane.store.dialects import Database
    from coplane.store.migrate import upgrade_schema

    settings = load_settings()
    ensure_sqlite_folder(settings.database_url)
    db = Database(settings.database_url, pool_size=1)
    try:
        with db.connect() as conn:
            applied = upgrade_schema(conn)
    finally:
        db.close()
    if applied:
        for m in applied:
            out.print(f"applied {m.version:04d}_{m.name}")
    else:
        out.print("database is up to date")
