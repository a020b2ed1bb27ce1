//! The metric model and the Prometheus text exposition format (version 0.0.4).
//!
//! An [`Exposition`] is a set of metric families by name, each of one [`Kind`], each holding series by
//! label set. Adding a series that is already there adds to it (counters, gauges and histograms alike):
//! every shard writes its own counters into the same exposition and the sums are the agent's. A gauge
//! meant to be the same in every shard (a configured cap) is written once with [`Exposition::set_gauge`].
//!
//! Names are checked (`[a-zA-Z_:][a-zA-Z0-9_:]*`, labels `[a-zA-Z_][a-zA-Z0-9_]*` not starting with `__`),
//! counters must end in `_total`; label values are escaped (`\\`, `\"`, `\n`), HELP text too (`\\`, `\n`).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::AdminError;

/// What a metric family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (reset at restart); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in cumulative buckets, with their sum and count.
    Histogram,
}

impl Kind {
    /// The word of the `# TYPE` line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A label set, sorted by label name (so the same labels in any order are the same series).
type LabelSet = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(f64),
    Histogram {
        /// Upper bounds, increasing, without `+Inf`.
        bounds: Vec<f64>,
        /// Observations per bucket (not cumulative), one more than `bounds` (the last is above every bound).
        counts: Vec<u64>,
        sum: f64,
    },
}

#[derive(Debug, Clone)]
struct Family {
    help: String,
    kind: Kind,
    series: BTreeMap<LabelSet, Value>,
}

/// Metric families by name, rendered in Prometheus' text format by [`Exposition::render`].
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Adds `value` to the counter series `name{labels}`.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), AdminError> {
        if !name.ends_with("_total") {
            return Err(AdminError::CounterWithoutTotal(name.to_owned()));
        }
        self.add_scalar(name, help, Kind::Counter, labels, value)
    }

    /// Adds `value` to the gauge series `name{labels}` (per-shard parts of one figure sum up).
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), AdminError> {
        self.add_scalar(name, help, Kind::Gauge, labels, value)
    }

    /// Sets the gauge series `name{labels}` to `value`, whatever it was.
    pub fn set_gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), AdminError> {
        let series = self.series(name, help, Kind::Gauge, labels)?;
        series.1.insert(series.0, Value::Scalar(value));
        Ok(())
    }

    /// Adds observations to the histogram series `name{labels}`: `counts[i]` observations were at most
    /// `bounds[i]` (and above the bound before), `counts[bounds.len()]` above every bound; `sum` is their sum.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) -> Result<(), AdminError> {
        let increasing = bounds.windows(2).all(|w| w[0] < w[1]) && bounds.iter().all(|b| b.is_finite());
        if counts.len() != bounds.len() + 1 || !increasing {
            return Err(AdminError::BucketMismatch(name.to_owned()));
        }
        let (key, series) = self.series(name, help, Kind::Histogram, labels)?;
        match series.get_mut(&key) {
            None => {
                series.insert(
                    key,
                    Value::Histogram {
                        bounds: bounds.to_vec(),
                        counts: counts.to_vec(),
                        sum,
                    },
                );
            }
            Some(Value::Histogram {
                bounds: have,
                counts: total,
                sum: total_sum,
            }) if have.as_slice() == bounds => {
                for (t, c) in total.iter_mut().zip(counts) {
                    *t += c;
                }
                *total_sum += sum;
            }
            Some(_) => return Err(AdminError::BucketMismatch(name.to_owned())),
        }
        Ok(())
    }

    /// Every series of `other` added into this one (per-shard snapshots merged).
    pub fn merge(&mut self, other: &Exposition) -> Result<(), AdminError> {
        for (name, fam) in &other.families {
            for (labels, value) in &fam.series {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                match value {
                    Value::Scalar(v) => self.add_scalar(name, &fam.help, fam.kind, &labels, *v)?,
                    Value::Histogram { bounds, counts, sum } => {
                        self.histogram(name, &fam.help, &labels, bounds, counts, *sum)?
                    }
                }
            }
        }
        Ok(())
    }

    /// The value of a scalar series (tests, and figures shown by tools), `None` if absent or a histogram.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key = label_set(labels).ok()?;
        match self.families.get(name)?.series.get(&key)? {
            Value::Scalar(v) => Some(*v),
            Value::Histogram { .. } => None,
        }
    }

    /// The families' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.families.keys().map(String::as_str)
    }

    fn add_scalar(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), AdminError> {
        let (key, series) = self.series(name, help, kind, labels)?;
        match series.entry(key).or_insert(Value::Scalar(0.0)) {
            Value::Scalar(v) => *v += value,
            // The family's kind was checked: a scalar family never holds a histogram.
            Value::Histogram { .. } => return Err(AdminError::BucketMismatch(name.to_owned())),
        }
        Ok(())
    }

    /// The series map of family `name` (created with `help` and `kind` if new) and the key for `labels`.
    fn series(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
    ) -> Result<(LabelSet, &mut BTreeMap<LabelSet, Value>), AdminError> {
        if !valid_metric_name(name) {
            return Err(AdminError::BadMetricName(name.to_owned()));
        }
        let key = label_set(labels)?;
        if kind == Kind::Histogram && key.iter().any(|(k, _)| k == "le") {
            return Err(AdminError::BadLabelName("le".to_owned()));
        }
        let fam = self.families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        if fam.kind != kind {
            return Err(AdminError::KindMismatch {
                name: name.to_owned(),
                was: fam.kind.name(),
                now: kind.name(),
            });
        }
        Ok((key, &mut fam.series))
    }

    /// The text exposition format: per family a `# HELP` and a `# TYPE` line, then its series (histograms as
    /// cumulative `_bucket{le=...}` series ending in `le="+Inf"`, then `_sum` and `_count`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.families.len() * 256);
        for (name, fam) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&fam.help));
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind.name());
            for (labels, value) in &fam.series {
                match value {
                    Value::Scalar(v) => {
                        out.push_str(name);
                        write_labels(&mut out, labels, None);
                        let _ = writeln!(out, " {}", number(*v));
                    }
                    Value::Histogram { bounds, counts, sum } => {
                        let mut cumulative = 0u64;
                        for (i, c) in counts.iter().enumerate() {
                            cumulative += c;
                            let le = bounds.get(i).map_or_else(|| "+Inf".to_owned(), |b| number(*b));
                            let _ = write!(out, "{name}_bucket");
                            write_labels(&mut out, labels, Some(&le));
                            let _ = writeln!(out, " {cumulative}");
                        }
                        let _ = write!(out, "{name}_sum");
                        write_labels(&mut out, labels, None);
                        let _ = writeln!(out, " {}", number(*sum));
                        let _ = write!(out, "{name}_count");
                        write_labels(&mut out, labels, None);
                        let _ = writeln!(out, " {cumulative}");
                    }
                }
            }
        }
        out
    }
}

fn label_set(labels: &[(&str, &str)]) -> Result<LabelSet, AdminError> {
    let mut set: LabelSet = Vec::with_capacity(labels.len());
    for (k, v) in labels {
        if !valid_label_name(k) {
            return Err(AdminError::BadLabelName((*k).to_owned()));
        }
        if set.iter().any(|(have, _)| have == k) {
            return Err(AdminError::BadLabelName(format!("{k} (twice)")));
        }
        set.push(((*k).to_owned(), (*v).to_owned()));
    }
    set.sort();
    Ok(set)
}

fn write_labels(out: &mut String, labels: &LabelSet, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let extra = le.map(|le| ("le", le));
    for (k, v) in labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(extra) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's shortest round-trip form ("1", "0.005", "1e-7"), which Go's ParseFloat reads.
        format!("{v}")
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_with_help_type_and_escaped_labels() {
        let mut e = Exposition::new();
        e.counter(
            "mesh_requests_total",
            "Calls.\nAll of them",
            &[("service", "a\"b\\c\nd"), ("method", "m")],
            3.0,
        )
        .unwrap();
        e.gauge("mesh_inflight", "In flight", &[], 2.5).unwrap();
        let text = e.render();
        assert_eq!(
            text,
            "# HELP mesh_inflight In flight\n# TYPE mesh_inflight gauge\nmesh_inflight 2.5\n\
             # HELP mesh_requests_total Calls.\\nAll of them\n# TYPE mesh_requests_total counter\n\
             mesh_requests_total{method=\"m\",service=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn shards_merge_by_summing_series() {
        let mut a = Exposition::new();
        let mut b = Exposition::new();
        a.counter("x_total", "h", &[("shard", "all"), ("k", "1")], 2.0)
            .unwrap();
        b.counter("x_total", "h", &[("k", "1"), ("shard", "all")], 5.0)
            .unwrap();
        b.counter("x_total", "h", &[("k", "2"), ("shard", "all")], 1.0)
            .unwrap();
        a.histogram("d_seconds", "h", &[], &[0.1, 1.0], &[1, 2, 3], 7.5)
            .unwrap();
        b.histogram("d_seconds", "h", &[], &[0.1, 1.0], &[4, 0, 1], 0.5)
            .unwrap();
        let mut total = Exposition::new();
        total.merge(&a).unwrap();
        total.merge(&b).unwrap();
        assert_eq!(total.value("x_total", &[("k", "1"), ("shard", "all")]), Some(7.0));
        assert_eq!(total.value("x_total", &[("k", "2"), ("shard", "all")]), Some(1.0));
        let text = total.render();
        assert!(text.contains("d_seconds_bucket{le=\"0.1\"} 5\n"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"1\"} 7\n"), "{text}");
        assert!(text.contains("d_seconds_bucket{le=\"+Inf\"} 11\n"), "{text}");
        assert!(text.contains("d_seconds_sum 8\nd_seconds_count 11\n"), "{text}");
    }

    #[test]
    fn histogram_labels_come_before_le() {
        let mut e = Exposition::new();
        e.histogram("lat_seconds", "h", &[("service", "s")], &[0.005], &[1, 0], 0.001)
            .unwrap();
        let text = e.render();
        assert!(
            text.contains("lat_seconds_bucket{service=\"s\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_count{service=\"s\"} 1\n"), "{text}");
    }

    #[test]
    fn set_gauge_replaces() {
        let mut e = Exposition::new();
        e.set_gauge("cap", "h", &[], 4.0).unwrap();
        e.set_gauge("cap", "h", &[], 4.0).unwrap();
        assert_eq!(e.value("cap", &[]), Some(4.0));
    }

    #[test]
    fn bad_names_kinds_and_buckets_are_refused() {
        let mut e = Exposition::new();
        assert!(matches!(
            e.counter("requests", "h", &[], 1.0),
            Err(AdminError::CounterWithoutTotal(_))
        ));
        assert!(matches!(
            e.gauge("1abc", "h", &[], 1.0),
            Err(AdminError::BadMetricName(_))
        ));
        assert!(matches!(
            e.gauge("a-b", "h", &[], 1.0),
            Err(AdminError::BadMetricName(_))
        ));
        assert!(matches!(
            e.gauge("ok", "h", &[("__x", "v")], 1.0),
            Err(AdminError::BadLabelName(_))
        ));
        assert!(matches!(
            e.gauge("ok", "h", &[("a-b", "v")], 1.0),
            Err(AdminError::BadLabelName(_))
        ));
        assert!(matches!(
            e.gauge("ok", "h", &[("a", "1"), ("a", "2")], 1.0),
            Err(AdminError::BadLabelName(_))
        ));
        e.gauge("g_total", "h", &[], 1.0).unwrap();
        assert!(matches!(
            e.counter("g_total", "h", &[], 1.0),
            Err(AdminError::KindMismatch { .. })
        ));
        assert!(matches!(
            e.histogram("h", "h", &[], &[1.0], &[1], 0.0),
            Err(AdminError::BucketMismatch(_))
        ));
        assert!(matches!(
            e.histogram("h", "h", &[], &[2.0, 1.0], &[1, 1, 1], 0.0),
            Err(AdminError::BucketMismatch(_))
        ));
        assert!(matches!(
            e.histogram("h", "h", &[("le", "1")], &[1.0], &[1, 1], 0.0),
            Err(AdminError::BadLabelName(_))
        ));
        e.histogram("h", "h", &[], &[1.0], &[1, 1], 0.0).unwrap();
        assert!(matches!(
            e.histogram("h", "h", &[], &[2.0], &[1, 1], 0.0),
            Err(AdminError::BucketMismatch(_))
        ));
    }

    #[test]
    fn numbers_as_prometheus_reads_them() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.0025), "0.0025");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e21), "1000000000000000000000");
    }
}
