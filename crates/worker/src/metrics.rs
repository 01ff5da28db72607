//! The node's latency histograms, rendered in Prometheus' text format.
//!
//! A [`Histogram`] counts observations into fixed buckets with atomic adds only: the
//! event pipeline records one observation per batch on its hot path, so recording takes
//! no lock and allocates nothing. Bucket bounds go from 50 µs to 60 s, roughly three per
//! decade (1, 2, 5), which resolves both a warm hand-off (tens to hundreds of
//! microseconds) and a backlog's queueing delay (seconds).
//!
//! [`Metrics`] is the node's set, owned by the [`WorkerManager`](crate::WorkerManager)
//! (every component that places or feeds invocations already holds it) and exposed by
//! the frontend at `GET /ember/v1/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (`+Inf` is implicit).
const BOUNDS_US: &[u64] = &[
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 60_000_000,
];

/// A cumulative latency histogram (Prometheus `histogram` type, in seconds).
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub const fn new(name: &'static str, help: &'static str) -> Histogram {
        Histogram {
            name,
            help,
            buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Append the histogram in Prometheus' text exposition format.
    pub fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BOUNDS_US.get(i) {
                Some(&us) => {
                    let le = us as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// When a queued event was sent and when a poller received it, for the latency figures
/// of the invocation it becomes.
#[derive(Debug, Clone, Copy)]
pub struct EventTiming {
    /// When the poller's receive returned the message.
    pub received: std::time::Instant,
    /// The message's (the batch's oldest) SentTimestamp, ms since the Unix epoch.
    pub sent_ms: i64,
}

/// The node's histograms.
pub struct Metrics {
    /// Queued events (event source mappings, routing queues, asynchronous invocations):
    /// the message received from its queue → its event handed to the function's runtime
    /// (warm: Ember's own overhead; otherwise it includes the start).
    pub poll_to_handler: Histogram,
    /// Queued events: the (oldest) message sent → its event handed to the runtime (time
    /// spent queued, then delivered).
    pub send_to_handler: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            poll_to_handler: Histogram::new(
                "ember_poll_to_handler_seconds",
                "Queued event (mapping batch, routed message, asynchronous event) received from its queue to its event handed to the runtime.",
            ),
            send_to_handler: Histogram::new(
                "ember_send_to_handler_seconds",
                "Queued event's (oldest) message sent to its event handed to the runtime.",
            ),
        }
    }
}

impl Metrics {
    /// Every metric, in Prometheus' text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.poll_to_handler.render(&mut out);
        self.send_to_handler.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix} in\n{text}"))
    }

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new("t_seconds", "test");
        h.observe(Duration::from_micros(50)); // le 50 µs (bounds are inclusive)
        h.observe(Duration::from_micros(51)); // le 100 µs
        h.observe(Duration::from_micros(150)); // le 200 µs
        h.observe(Duration::from_secs(3600)); // +Inf
        let mut out = String::new();
        h.render(&mut out);
        assert_eq!(
            line(&out, "t_seconds_bucket{le=\"0.00005\"}"),
            "t_seconds_bucket{le=\"0.00005\"} 1"
        );
        assert_eq!(
            line(&out, "t_seconds_bucket{le=\"0.0001\"}"),
            "t_seconds_bucket{le=\"0.0001\"} 2"
        );
        assert_eq!(
            line(&out, "t_seconds_bucket{le=\"0.0002\"}"),
            "t_seconds_bucket{le=\"0.0002\"} 3"
        );
        assert_eq!(
            line(&out, "t_seconds_bucket{le=\"60\"}"),
            "t_seconds_bucket{le=\"60\"} 3"
        );
        assert_eq!(
            line(&out, "t_seconds_bucket{le=\"+Inf\"}"),
            "t_seconds_bucket{le=\"+Inf\"} 4"
        );
        assert_eq!(line(&out, "t_seconds_count"), "t_seconds_count 4");
        let sum: f64 = line(&out, "t_seconds_sum")
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 3600.000251).abs() < 1e-6, "{sum}");
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn exposition_format_has_help_type_and_ordered_buckets() {
        let m = Metrics::default();
        m.poll_to_handler.observe(Duration::from_micros(120));
        let text = m.render();
        for name in [
            "ember_poll_to_handler_seconds",
            "ember_send_to_handler_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} histogram\n")),
                "{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
            // Bounds strictly increase and counts never decrease, ending at +Inf = count.
            let buckets: Vec<(f64, u64)> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{name}_bucket")))
                .map(|l| {
                    let le = l.split('"').nth(1).unwrap();
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    (le, l.rsplit(' ').next().unwrap().parse().unwrap())
                })
                .collect();
            assert_eq!(buckets.len(), BOUNDS_US.len() + 1);
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            );
            let count: u64 = line(&text, &format!("{name}_count "))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
        }
        assert_eq!(
            line(&text, "ember_poll_to_handler_seconds_count"),
            "ember_poll_to_handler_seconds_count 1"
        );
        assert_eq!(
            line(&text, "ember_send_to_handler_seconds_count"),
            "ember_send_to_handler_seconds_count 0"
        );
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new("c_seconds", "test"));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(Duration::from_micros(i * (t + 1)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 40_000);
    }
}
