//! What a drill measured, read from its history alone (pure functions, like the checker): for
//! each fault, how long until the mesh said so (detect) and until a write committed again
//! (rto); what went wrong for shoppers and admins, by kind; the largest replication lag; the
//! orders edges took while a fault lasted; and a per-second timeline, drawn as a
//! self-contained SVG.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::checker::Event;

/// One fault of a drill and what followed it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FaultTiming {
    pub at_ms: u64,
    pub what: String,
    /// The heal that ended it.
    pub healed_at_ms: Option<u64>,
    /// Fault → the first time the mesh reported something changed (a leader lost or moved, a
    /// member a second behind, an edge without a core), before the heal; `None` if it never did.
    pub detect_ms: Option<u64>,
    /// Fault → the end of the first write probe that started after it and committed.
    pub rto_ms: Option<u64>,
    /// The first leader the mesh reported after the fault other than the one before it, before
    /// the heal: who won the election the fault caused (`None`: the leader never changed).
    pub leader_after: Option<String>,
}

/// Each fault in the history with its heal, detect and rto.
pub fn faults(history: &[Event]) -> Vec<FaultTiming> {
    let mut out: Vec<FaultTiming> = Vec::new();
    for e in history {
        match e {
            Event::Fault { at_ms, what } => out.push(FaultTiming {
                at_ms: *at_ms,
                what: what.clone(),
                healed_at_ms: None,
                detect_ms: None,
                rto_ms: None,
                leader_after: None,
            }),
            Event::Heal { at_ms } => {
                for f in out.iter_mut().filter(|f| f.healed_at_ms.is_none()) {
                    f.healed_at_ms = Some(*at_ms);
                }
            }
            _ => {}
        }
    }
    for f in &mut out {
        f.detect_ms = detect(history, f);
        f.leader_after = leader_after(history, f);
        f.rto_ms = history
            .iter()
            .filter_map(|e| match e {
                Event::Probe {
                    at_ms,
                    took_ms,
                    ok: true,
                } if *at_ms >= f.at_ms => Some(at_ms + took_ms - f.at_ms),
                _ => None,
            })
            .min();
    }
    out
}

fn detect(history: &[Event], f: &FaultTiming) -> Option<u64> {
    let observations = history.iter().filter_map(|e| match e {
        Event::Observe {
            at_ms,
            leader,
            lagging,
            edges_disconnected,
            ..
        } => Some((*at_ms, leader, lagging, edges_disconnected)),
        _ => None,
    });
    let mut baseline = None;
    for (at, leader, lagging, disconnected) in observations {
        if at < f.at_ms {
            baseline = Some((leader, lagging, disconnected));
            continue;
        }
        if f.healed_at_ms.is_some_and(|h| at > h) {
            return None;
        }
        let (l0, lag0, dis0) = baseline?;
        if leader != l0
            || lagging.iter().any(|m| !lag0.contains(m))
            || disconnected.iter().any(|e| !dis0.contains(e))
        {
            return Some(at - f.at_ms);
        }
    }
    None
}

fn leader_after(history: &[Event], f: &FaultTiming) -> Option<String> {
    let mut before = None;
    for e in history {
        let Event::Observe { at_ms, leader, .. } = e else {
            continue;
        };
        if *at_ms < f.at_ms {
            before = leader.as_ref();
            continue;
        }
        if f.healed_at_ms.is_some_and(|h| *at_ms > h) {
            return None;
        }
        if leader.is_some() && leader.as_ref() != before {
            return leader.clone();
        }
    }
    None
}

/// The kind of a failed answer: its problem type's last segment, `no answer`, or the status.
fn kind(status: u16, problem: Option<&str>) -> String {
    match (status, problem) {
        (0, _) => "no answer".into(),
        (_, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_owned(),
        (s, None) => format!("http {s}"),
    }
}

/// Every request that did not succeed, counted by what it was and why.
pub fn errors_by_kind(history: &[Event]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in history {
        let k = match e {
            Event::OrderAnswer {
                status, problem, ..
            } if !matches!(status, 200 | 201) => {
                format!("order: {}", kind(*status, problem.as_deref()))
            }
            Event::Browse { status, .. } if *status != 200 => {
                format!("browse: {}", kind(*status, None))
            }
            Event::Admin { status, .. } if !(200..300).contains(status) => {
                format!("admin: {}", kind(*status, None))
            }
            Event::Probe { ok: false, .. } => "probe: not committed".into(),
            _ => continue,
        };
        *out.entry(k).or_default() += 1;
    }
    out
}

/// The largest replication lag the mesh reported for a member the fault did not take down.
pub fn max_replication_lag_ms(history: &[Event]) -> Option<u64> {
    history
        .iter()
        .filter_map(|e| match e {
            Event::Observe { max_lag_ms, .. } => *max_lag_ms,
            _ => None,
        })
        .max()
}

/// Orders each edge acknowledged while a fault lasted (from the fault to its heal).
pub fn acked_during_faults(history: &[Event]) -> BTreeMap<String, u64> {
    let windows: Vec<(u64, u64)> = faults(history)
        .iter()
        .map(|f| (f.at_ms, f.healed_at_ms.unwrap_or(u64::MAX)))
        .collect();
    let mut edge_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in history {
        match e {
            Event::Order { key, edge, .. } => {
                edge_of.insert(key, edge);
            }
            Event::OrderAnswer {
                at_ms,
                key,
                status: 200 | 201,
                ..
            } if windows.iter().any(|(a, b)| (*a..=*b).contains(at_ms)) => {
                if let Some(edge) = edge_of.get(key.as_str()) {
                    *out.entry((*edge).to_owned()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// One second of a drill.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Second {
    /// Seconds since the history began.
    pub t: u64,
    pub acked: u64,
    /// Refused with a 4xx (out of stock, slow down, bad input).
    pub refused: u64,
    /// No answer, or a 5xx.
    pub failed: u64,
    pub browsed: u64,
    pub browse_failed: u64,
    pub probes_ok: u64,
    pub probes_failed: u64,
    pub max_lag_ms: Option<u64>,
}

/// The history second by second, from its first event to its last.
pub fn timeline(history: &[Event]) -> Vec<Second> {
    let Some(start) = history.iter().map(at).min() else {
        return Vec::new();
    };
    let end = history.iter().map(at).max().unwrap_or(start);
    let mut out: Vec<Second> = (0..=(end - start) / 1000)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    for e in history {
        let s = &mut out[((at(e) - start) / 1000) as usize];
        match e {
            Event::OrderAnswer { status, .. } => match status {
                200 | 201 => s.acked += 1,
                400..500 => s.refused += 1,
                _ => s.failed += 1,
            },
            Event::Browse { status: 200, .. } => s.browsed += 1,
            Event::Browse { .. } => s.browse_failed += 1,
            Event::Probe { ok: true, .. } => s.probes_ok += 1,
            Event::Probe { ok: false, .. } => s.probes_failed += 1,
            Event::Observe {
                max_lag_ms: Some(l),
                ..
            } => s.max_lag_ms = Some(s.max_lag_ms.unwrap_or(0).max(*l)),
            _ => {}
        }
    }
    out
}

fn at(e: &Event) -> u64 {
    match e {
        Event::Order { at_ms, .. }
        | Event::OrderAnswer { at_ms, .. }
        | Event::Browse { at_ms, .. }
        | Event::Admin { at_ms, .. }
        | Event::Probe { at_ms, .. }
        | Event::Observe { at_ms, .. }
        | Event::Fault { at_ms, .. }
        | Event::Heal { at_ms } => *at_ms,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The timeline as a self-contained SVG: orders acknowledged, refused and failed, and write
/// probes not committed, per second above; the largest replication lag below; each fault's
/// window shaded.
pub fn svg(title: &str, history: &[Event]) -> String {
    const W: f64 = 900.0;
    const LEFT: f64 = 60.0;
    const PLOT_W: f64 = W - LEFT - 20.0;
    const TOP_H: f64 = 220.0;
    const LAG_Y: f64 = 290.0;
    const LAG_H: f64 = 100.0;
    let seconds = timeline(history);
    let start = history.iter().map(at).min().unwrap_or(0);
    let span = seconds.len().max(2) as f64 - 1.0;
    let x = |t: f64| LEFT + PLOT_W * t / span;
    let peak = seconds
        .iter()
        .map(|s| s.acked.max(s.refused).max(s.failed))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let lag_peak = seconds
        .iter()
        .filter_map(|s| s.max_lag_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="430" font-family="sans-serif" font-size="12">
<title>{title}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14">{title}</text>
"#,
        title = escape(title)
    );
    for f in faults(history) {
        let a = (f.at_ms.saturating_sub(start)) as f64 / 1000.0;
        let b = f
            .healed_at_ms
            .map_or(span, |h| h.saturating_sub(start) as f64 / 1000.0);
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="30" width="{:.1}" height="{:.1}" fill="#f4c7c3" opacity="0.6"><title>{}</title></rect>"##,
            x(a),
            (x(b) - x(a)).max(1.0),
            LAG_Y + LAG_H - 30.0,
            escape(&f.what)
        );
    }
    type Series = (&'static str, &'static str, fn(&Second) -> u64);
    let series: [Series; 4] = [
        ("acknowledged", "#1e8e3e", |s| s.acked),
        ("refused (4xx)", "#f29900", |s| s.refused),
        ("failed (no answer, 5xx)", "#d93025", |s| s.failed),
        ("write probes not committed", "#9334e6", |s| s.probes_failed),
    ];
    for (i, (name, colour, value)) in series.iter().enumerate() {
        let points: String = seconds
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{:.1} ",
                    x(s.t as f64),
                    30.0 + TOP_H * (1.0 - value(s) as f64 / peak)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>
<text x="{:.1}" y="{}" fill="{colour}">{name}</text>"#,
            LEFT + 10.0 + 200.0 * i as f64,
            TOP_H + 50.0
        );
    }
    let lag: String = seconds
        .iter()
        .filter_map(|s| {
            s.max_lag_ms.map(|l| {
                format!(
                    "{:.1},{:.1} ",
                    x(s.t as f64),
                    LAG_Y + LAG_H * (1.0 - l as f64 / lag_peak)
                )
            })
        })
        .collect();
    let _ = write!(
        out,
        r##"<text x="5" y="36">{peak} /s</text><text x="5" y="{bottom}">0</text>
<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>
<polyline fill="none" stroke="#1a73e8" stroke-width="1.5" points="{lag}"/>
<text x="5" y="{lag_top}">{lag_peak} ms</text><text x="{LEFT}" y="{lag_label}" fill="#1a73e8">largest replication lag</text>
<line x1="{LEFT}" y1="{lag_bottom}" x2="{right}" y2="{lag_bottom}" stroke="#999"/>
<text x="{LEFT}" y="{axis}">0 s</text><text x="{right_label}" y="{axis}">{span} s</text>
</svg>
"##,
        bottom = 30.0 + TOP_H,
        right = LEFT + PLOT_W,
        lag_top = LAG_Y + 6.0,
        lag_label = LAG_Y - 6.0,
        lag_bottom = LAG_Y + LAG_H,
        axis = LAG_Y + LAG_H + 20.0,
        right_label = LEFT + PLOT_W - 30.0,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(at_ms: u64, leader: &str, lagging: &[&str]) -> Event {
        Event::Observe {
            at_ms,
            leader: (!leader.is_empty()).then(|| leader.to_owned()),
            lagging: lagging.iter().map(|s| (*s).to_owned()).collect(),
            max_lag_ms: Some(at_ms / 100),
            edges_disconnected: vec![],
        }
    }

    fn probe(at_ms: u64, ok: bool) -> Event {
        Event::Probe {
            at_ms,
            took_ms: 20,
            ok,
        }
    }

    fn answer(at_ms: u64, key: &str, status: u16, problem: Option<&str>) -> Event {
        Event::OrderAnswer {
            at_ms,
            customer: "c".into(),
            key: key.into(),
            status,
            order_id: (status == 201).then(|| format!("o-{key}")),
            problem: problem.map(str::to_owned),
        }
    }

    fn order(at_ms: u64, key: &str, edge: &str) -> Event {
        Event::Order {
            at_ms,
            edge: edge.into(),
            customer: "c".into(),
            key: key.into(),
            lines: vec![],
        }
    }

    #[test]
    fn detect_is_the_first_change_the_mesh_reports_and_rto_the_first_committed_probe() {
        let h = vec![
            observe(900, "a", &[]),
            probe(950, true),
            Event::Fault {
                at_ms: 1_000,
                what: "SIGKILL a".into(),
            },
            probe(990, true), // started before the fault: does not count
            observe(1_100, "a", &[]),
            probe(1_100, false),
            observe(1_400, "", &[]),
            observe(1_500, "b", &[]),
            probe(1_700, true),
            Event::Heal { at_ms: 3_000 },
            observe(3_900, "b", &[]),
            Event::Fault {
                at_ms: 4_000,
                what: "cut c".into(),
            },
            observe(4_500, "b", &[]),
            observe(5_200, "b", &["c"]),
            probe(4_100, true),
            Event::Heal { at_ms: 6_000 },
            Event::Fault {
                at_ms: 7_000,
                what: "slow link".into(),
            },
            observe(7_100, "b", &[]),
            Event::Heal { at_ms: 8_000 },
            observe(8_100, "", &[]),
        ];
        let f = faults(&h);
        assert_eq!(f.len(), 3);
        assert_eq!(
            (f[0].detect_ms, f[0].rto_ms, f[0].healed_at_ms),
            (Some(400), Some(720), Some(3_000))
        );
        assert_eq!((f[1].detect_ms, f[1].rto_ms), (Some(1_200), Some(120)));
        // A new leader after the first fault; the same one throughout the second.
        assert_eq!(f[0].leader_after.as_deref(), Some("b"));
        assert_eq!(f[1].leader_after, None);
        // Unnoticed before its heal; no probe after it.
        assert_eq!((f[2].detect_ms, f[2].rto_ms), (None, None));
        assert_eq!(max_replication_lag_ms(&h), Some(81));
    }

    #[test]
    fn errors_are_counted_by_what_failed_and_why() {
        let h = vec![
            answer(1, "k1", 201, None),
            answer(
                2,
                "k2",
                409,
                Some("https://tradewind.dev/problems/out-of-stock"),
            ),
            answer(
                3,
                "k3",
                409,
                Some("https://tradewind.dev/problems/out-of-stock"),
            ),
            answer(4, "k4", 0, None),
            answer(5, "k5", 503, None),
            Event::Browse {
                at_ms: 6,
                edge: "e".into(),
                status: 0,
                took_ms: 1,
            },
            Event::Admin {
                at_ms: 7,
                core: "a".into(),
                what: "price".into(),
                status: 200,
                version: Some(3),
                price: None,
            },
            probe(8, false),
        ];
        let e = errors_by_kind(&h);
        assert_eq!(
            e.into_iter().collect::<Vec<_>>(),
            [
                ("browse: no answer".to_owned(), 1),
                ("order: http 503".to_owned(), 1),
                ("order: no answer".to_owned(), 1),
                ("order: out-of-stock".to_owned(), 2),
                ("probe: not committed".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn orders_acknowledged_inside_a_fault_window_are_counted_per_edge() {
        let h = vec![
            order(0, "k1", "e1"),
            answer(10, "k1", 201, None),
            Event::Fault {
                at_ms: 100,
                what: "cut".into(),
            },
            order(110, "k2", "e1"),
            order(120, "k3", "e2"),
            order(130, "k4", "e2"),
            answer(150, "k2", 201, None),
            answer(160, "k3", 201, None),
            answer(170, "k4", 0, None),
            Event::Heal { at_ms: 200 },
            order(210, "k5", "e2"),
            answer(220, "k5", 201, None),
        ];
        let got = acked_during_faults(&h);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            [("e1".to_owned(), 1), ("e2".to_owned(), 1)]
        );
    }

    #[test]
    fn the_timeline_counts_each_second_and_the_svg_draws_it_with_the_fault() {
        let h = vec![
            answer(1_000, "k1", 201, None),
            answer(1_500, "k2", 409, None),
            Event::Fault {
                at_ms: 2_100,
                what: "cut <a> & b".into(),
            },
            answer(2_200, "k3", 0, None),
            answer(2_300, "k4", 201, None),
            observe(2_400, "a", &[]),
            Event::Heal { at_ms: 3_000 },
            answer(3_999, "k5", 201, None),
        ];
        let t = timeline(&h);
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].acked, t[0].refused, t[0].failed), (1, 1, 0));
        assert_eq!((t[1].acked, t[1].failed, t[1].max_lag_ms), (1, 1, Some(24)));
        assert_eq!(t[2].acked, 1);
        let drawn = svg("partition <drill>", &h);
        assert!(drawn.starts_with("<svg"), "{drawn}");
        assert!(drawn.contains("partition &lt;drill&gt;"));
        assert!(drawn.contains("cut &lt;a&gt; &amp; b"));
        assert_eq!(drawn.matches("<polyline").count(), 5);
        assert!(drawn.trim_end().ends_with("</svg>"));
        assert!(timeline(&[]).is_empty());
        assert!(svg("empty", &[]).contains("</svg>"));
    }
}
