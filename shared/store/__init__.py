"""The analytics-store port (ClickHouse SQL) and its adapters (chDB, ClickHouse server)."""
from shared.settings import Settings
from shared.store.port import AnalyticsStore

__all__ = ["AnalyticsStore", "open_store"]


def open_store(settings: Settings) -> AnalyticsStore:
    """ClickHouse server when POSTLINE_CLICKHOUSE_URL is set, else chDB in the data dir."""
    if settings.clickhouse_url:
        from shared.store.clickhouse import ClickHouseStore

        return ClickHouseStore(settings.clickhouse_url)
    from shared.store.chdb_store import ChdbStore

    return ChdbStore(settings.data_dir / "chdb")
