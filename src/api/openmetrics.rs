//! Prometheus' classic text format from prometheus-client's OpenMetrics output, for scrapers
//! that do not ask for OpenMetrics: `# UNIT` and `# EOF` lines dropped, and a counter family's
//! `HELP`/`TYPE` lines named like its samples (`<name>_total`).

/// OpenMetrics names a counter family without `_total` in HELP/TYPE; the classic text format
/// names it as its samples are named. Also drops the `# UNIT` and `# EOF` lines it lacks.
pub fn to_text_format(om: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        om.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_like_their_samples_and_openmetrics_only_lines_are_dropped() {
        let om = "# HELP gateway_acks Acks.\n# TYPE gateway_acks counter\n# UNIT gateway_acks acks\ngateway_acks_total 3\n\
                  # HELP gateway_backlog Backlog.\n# TYPE gateway_backlog gauge\ngateway_backlog 7\n# EOF\n";
        let text = to_text_format(om);
        assert_eq!(
            text,
            "# HELP gateway_acks_total Acks.\n# TYPE gateway_acks_total counter\ngateway_acks_total 3\n\
             # HELP gateway_backlog Backlog.\n# TYPE gateway_backlog gauge\ngateway_backlog 7\n"
        );
    }

    #[test]
    fn a_gauge_whose_name_ends_like_a_counter_is_left_alone() {
        let om = "# TYPE gateway_x gauge\ngateway_x 1\n# TYPE gateway_x_created counter\ngateway_x_created_total 1\n";
        let text = to_text_format(om);
        assert!(text.contains("# TYPE gateway_x gauge\n"), "{text}");
        assert!(text.contains("# TYPE gateway_x_created_total counter\n"), "{text}");
    }
}
