//! The printed table: medians over rounds and ratios crate / native.

use std::fmt::Write as _;

use crate::generator::Sample;
use crate::Point;

// ---------------------------------------------------------------------------------------------
// The table

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

pub(crate) struct Table {
    pub(crate) text: String,
}

impl Table {
    pub(crate) fn new(title: &str) -> Table {
        Table {
            text: format!(
                "{title}\n\n| point | rate crate | rate native | ratio | p50 µs crate / native | \
                 p99 µs crate / native | CPU µs/msg crate | CPU µs/msg native | ratio |\n\
                 |---|---|---|---|---|---|---|---|---|\n"
            ),
        }
    }

    pub(crate) fn point(&mut self, point: &Point, samples: &[Vec<Sample>; 2]) {
        let field =
            |i: usize, f: fn(&Sample) -> f64| median(&samples[i].iter().map(f).collect::<Vec<_>>());
        let unit = match point {
            Point::Echo { size, .. } if *size >= 64 * 1024 => "MiB/s",
            Point::Echo { .. } => "msg/s",
            Point::Connect { .. } => "conn/s",
        };
        let rate = [field(0, |s| s.per_sec), field(1, |s| s.per_sec)];
        let cpu = [field(0, |s| s.cpu_us), field(1, |s| s.cpu_us)];
        let _ = writeln!(
            self.text,
            "| {}{} | {} {unit} | {} {unit} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} | {:.2} | {:.2} |",
            point.name(),
            if point.pinned() { " (1 CPU)" } else { "" },
            human(rate[0]),
            human(rate[1]),
            rate[0] / rate[1],
            field(0, |s| s.p50_us),
            field(1, |s| s.p50_us),
            field(0, |s| s.p99_us),
            field(1, |s| s.p99_us),
            cpu[0],
            cpu[1],
            cpu[0] / cpu[1],
        );
    }

    /// RSS per idle connection of `echo_server` (`Own`), `echo_server --interest-scope shared`
    /// and `native_echo_server`, in bytes.
    pub(crate) fn idle(&mut self, conns: usize, [own, shared, native]: [f64; 3]) {
        let _ = writeln!(
            self.text,
            "\nRSS per idle connection ({conns} open, one echo each): crate {own:.0} B (Own), \
             {shared:.0} B (Shared), native {native:.0} B, ratio {:.2} (Own / native)",
            own / native
        );
    }
}

fn human(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1}k", value / 1000.0)
    } else {
        format!("{value:.0}")
    }
}
