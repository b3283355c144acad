//! Routing: where a validated row goes.
//!
//! A destination is a dataset, a base table and the UTC day of `event_time`. For day-sharded tables
//! (the default, as in the seed) the BigQuery table is `<table>YYYYMMDD`, created from the base table
//! through insertAll's `templateSuffix`; for partitioned tables rows go to the base table and
//! BigQuery places them. The file sink names its files after the destination either way.

use foldhash::HashMap;

use compact_str::CompactString;

use crate::config::{Partitioning, RoutingConfig};
use crate::time;

/// One destination table (and day) for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// BigQuery dataset.
    pub dataset: CompactString,
    /// Base table name.
    pub table: CompactString,
    /// How the table is split by time.
    pub partitioning: PartitionKind,
    /// UTC day of `event_time`, `YYYYMMDD`.
    pub day: CompactString,
}

/// [`Partitioning`] with `Ord` for use in map keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionKind {
    /// `<table>YYYYMMDD`.
    DayShard,
    /// One partitioned table.
    Partitioned,
}

impl Destination {
    /// A destination from its stored parts (spool and write-ahead log records keep a flag for
    /// the partitioning).
    pub fn from_parts(dataset: &str, table: &str, partitioned: bool, day: &str) -> Self {
        Self {
            dataset: dataset.into(),
            table: table.into(),
            partitioning: if partitioned {
                PartitionKind::Partitioned
            } else {
                PartitionKind::DayShard
            },
            day: day.into(),
        }
    }

    /// The BigQuery table that receives the rows: `<table>YYYYMMDD` or `<table>`.
    pub fn table_id(&self) -> String {
        match self.partitioning {
            PartitionKind::DayShard => format!("{}{}", self.table, self.day),
            PartitionKind::Partitioned => self.table.to_string(),
        }
    }

    /// insertAll's `templateSuffix`, for day-sharded tables.
    pub fn template_suffix(&self) -> Option<&str> {
        match self.partitioning {
            PartitionKind::DayShard => Some(&self.day),
            PartitionKind::Partitioned => None,
        }
    }

    /// The file sink's file name: `<table>YYYYMMDD.ndjson`, or `<table>$YYYYMMDD.ndjson` for a
    /// partitioned table (BigQuery's partition decorator, so `bq load 'ds.t$20261122'` matches).
    pub fn file_name(&self) -> String {
        match self.partitioning {
            PartitionKind::DayShard => format!("{}{}.ndjson", self.table, self.day),
            PartitionKind::Partitioned => format!("{}${}.ndjson", self.table, self.day),
        }
    }
}

#[derive(Debug, Clone)]
struct Route {
    dataset: CompactString,
    table: CompactString,
    partitioning: PartitionKind,
}

/// Maps (namespace, type, event time) to a [`Destination`].
#[derive(Debug, Clone)]
pub struct Router {
    default_partitioning: PartitionKind,
    overrides: HashMap<(CompactString, CompactString), Route>,
}

fn kind(p: Partitioning) -> PartitionKind {
    match p {
        Partitioning::DayShard => PartitionKind::DayShard,
        Partitioning::Partitioned => PartitionKind::Partitioned,
    }
}

impl Router {
    /// Builds the router from `[routing]` (keys were checked by config validation).
    pub fn new(config: &RoutingConfig) -> Self {
        let default_partitioning = kind(config.partitioning);
        let overrides = config
            .tables
            .iter()
            .filter_map(|(key, route)| {
                let (ns, ty) = key.split_once('.')?;
                Some((
                    (ns.into(), ty.into()),
                    Route {
                        dataset: route.dataset.as_deref().unwrap_or(ns).into(),
                        table: route.table.as_deref().unwrap_or(ty).into(),
                        partitioning: route.partitioning.map_or(default_partitioning, kind),
                    },
                ))
            })
            .collect();
        Self {
            default_partitioning,
            overrides,
        }
    }

    /// The dataset that `namespace` maps to for `type_name` (dead-letter rows go there too).
    pub fn dataset<'a>(&'a self, namespace: &'a str, type_name: &str) -> &'a str {
        self.overrides
            .get(&(namespace.into(), type_name.into()))
            .map_or(namespace, |r| r.dataset.as_str())
    }

    /// Where an event of `namespace`/`type_name` at `event_time` (µs) goes.
    pub fn route(&self, namespace: &str, type_name: &str, event_time: i64) -> Destination {
        let day = time::yyyymmdd_compact(event_time);
        match self.overrides.get(&(namespace.into(), type_name.into())) {
            Some(r) => Destination {
                dataset: r.dataset.clone(),
                table: r.table.clone(),
                partitioning: r.partitioning,
                day,
            },
            None => Destination {
                dataset: namespace.into(),
                table: type_name.into(),
                partitioning: self.default_partitioning,
                day,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn routes_by_utc_day_and_overrides() {
        let cfg = Config::from_toml_str(
            "[routing.tables.\"events.purchase\"]\ndataset = \"sales\"\ntable = \"orders\"\npartitioning = \"partitioned\"\n",
        )
        .unwrap();
        let r = Router::new(&cfg.routing);
        // 2026-11-22T23:59:59.999999Z and one microsecond later.
        let t = 1_795_391_999_999_999;
        let d = r.route("events", "transaction", t);
        assert_eq!(d.table_id(), "transaction20261122");
        assert_eq!(d.template_suffix(), Some("20261122"));
        assert_eq!(d.file_name(), "transaction20261122.ndjson");
        assert_eq!(
            r.route("events", "transaction", t + 1).table_id(),
            "transaction20261123"
        );
        let p = r.route("events", "purchase", t);
        assert_eq!(
            (p.dataset.as_str(), p.table_id()),
            ("sales", "orders".to_string())
        );
        assert_eq!(p.template_suffix(), None);
        assert_eq!(p.file_name(), "orders$20261122.ndjson");
        assert_eq!(r.dataset("events", "purchase"), "sales");
        assert_eq!(r.dataset("events", "transaction"), "events");
    }
}
