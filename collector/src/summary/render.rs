//! The summary as HTML (inline styles, for mail readers) and plain text.
//! Alerts appear as severity, category, time, state and a console link:
//! never captures or typed text.

use std::fmt::Write;

use super::chart;
use super::content::{Audience, Figures};
use crate::console::html::esc;
use crate::console::queue::state_label;
use crate::console::tz::parse_date;

/// `Mon 2 Jun 2025` for a `YYYY-MM-DD` date.
pub fn long_date(date: &str) -> String {
    match parse_date(date) {
        Some(day) => day.strftime("%a %-d %b %Y").to_string(),
        None => date.to_owned(),
    }
}

/// `Mon 02` for the chart's axis.
pub fn short_date(date: &str) -> String {
    match parse_date(date) {
        Some(day) => day.strftime("%a %d").to_string(),
        None => date.to_owned(),
    }
}

/// `3 days 4 hours`, `2 hours 5 minutes`, `12 minutes`, `40 seconds`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{} {}", plural(d, "day"), plural(h, "hour"))
    } else if h > 0 {
        format!("{} {}", plural(h, "hour"), plural(m, "minute"))
    } else if m > 0 {
        plural(m, "minute")
    } else {
        plural(s, "second")
    }
}

/// `+4`, `-2`, `0`.
pub fn change(now: i64, before: i64) -> String {
    match now - before {
        d if d > 0 => format!("+{d}"),
        d => d.to_string(),
    }
}

/// The days' counts with short labels, for the chart.
pub fn chart_days(f: &Figures) -> Vec<(String, Vec<i64>)> {
    f.days
        .iter()
        .map(|(date, counts)| (short_date(date), counts.clone()))
        .collect()
}

pub fn subject(f: &Figures) -> String {
    let who = match f.audience {
        Audience::Pupils => "",
        Audience::Staff => " (staff alerts)",
    };
    format!(
        "Tutela weekly summary{who}: week of {}",
        long_date(&f.week.label())
    )
}

fn week_span(f: &Figures) -> String {
    let first = &f.days.first().map(|d| d.0.clone()).unwrap_or_default();
    let last = &f.days.last().map(|d| d.0.clone()).unwrap_or_default();
    format!("{} to {}", long_date(first), long_date(last))
}

/// `text` with every control character (newlines included) replaced by
/// `?`: names, categories, rule ids and reasons come from agents, rule packs
/// and staff, and must not start lines of their own in the plain-text part.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The monitoring notice's figures in one sentence.
fn notice_line(f: &Figures) -> String {
    let n = f.notice;
    format!(
        "Monitoring notice: {} acknowledgement(s) this week; {} pupil(s) have accepted their group's current version, {} have not yet.",
        n.received, n.accepted, n.pending
    )
}

/// The figures with their free-text fields made `one_line`.
fn plain_figures(f: &Figures) -> Figures {
    let mut f = f.clone();
    for c in &mut f.categories {
        c.category = one_line(&c.category);
    }
    for t in &mut f.top {
        t.category = one_line(&t.category);
        t.state = one_line(&t.state);
    }
    for r in &mut f.fp_rules {
        r.rule_id = one_line(&r.rule_id);
    }
    for s in &mut f.silent {
        s.station = one_line(&s.station);
        s.grp = one_line(&s.grp);
    }
    for r in &mut f.rule_changes {
        r.pack_id = one_line(&r.pack_id);
    }
    for e in &mut f.exemptions {
        e.grp = one_line(&e.grp);
        e.category = one_line(&e.category);
        e.term = one_line(&e.term);
        e.reason = one_line(&e.reason);
        e.created_by = one_line(&e.created_by);
    }
    for d in &mut f.days {
        d.0 = one_line(&d.0);
    }
    f
}

/// The plain-text part.
pub fn text(f: &Figures) -> String {
    let f = &plain_figures(f);
    let mut t = String::new();
    let _ = writeln!(t, "{}", subject(f));
    let _ = writeln!(t, "Week: {} ({})", week_span(f), zone_name(f));
    if f.audience == Audience::Staff {
        let _ = writeln!(t, "This summary covers alerts about staff accounts only.");
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Alerts this week: {} (previous week {}, change {})",
        f.total,
        f.previous_total,
        change(f.total, f.previous_total)
    );
    let _ = writeln!(
        t,
        "By category (severity 1/2/3/4/5; total; previous week; change):"
    );
    for c in &f.categories {
        let sev: Vec<String> = c.by_severity.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            t,
            "  {}: {}; {}; {}; {}",
            c.category,
            sev.join("/"),
            c.total,
            c.previous,
            change(c.total, c.previous)
        );
    }
    let _ = writeln!(t, "Alerts per day:");
    for (date, counts) in &f.days {
        let _ = writeln!(t, "  {}: {}", long_date(date), counts.iter().sum::<i64>());
    }
    let _ = writeln!(t);
    match f.oldest_unreviewed_ms {
        Some(oldest) => {
            let _ = writeln!(
                t,
                "Unreviewed alerts: {} (oldest waiting {})",
                f.unreviewed,
                duration(f.generated_ms - oldest)
            );
        }
        None => {
            let _ = writeln!(t, "Unreviewed alerts: 0");
        }
    }
    match f.median_first_review_ms {
        Some(ms) => {
            let _ = writeln!(
                t,
                "Median time to first review: {} ({} alerts reviewed)",
                duration(ms),
                f.reviewed
            );
        }
        None => {
            let _ = writeln!(t, "Median time to first review: none reviewed yet");
        }
    }
    if f.audience == Audience::Pupils {
        let _ = writeln!(
            t,
            "Alerts about staff this week: {} (the head teacher reviews these; not listed here)",
            f.staff_alerts
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Most severe alerts this week:");
    if f.top.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for a in &f.top {
        let _ = writeln!(
            t,
            "  severity {}, {}, {} ({}): {}/alerts/{}",
            a.severity,
            a.category,
            f.zone.format(a.time_ms),
            state_label(&a.state),
            f.console_url,
            a.id
        );
    }
    let _ = writeln!(t, "Rules with the most false positives:");
    if f.fp_rules.is_empty() {
        let _ = writeln!(t, "  none");
    }
    for r in &f.fp_rules {
        let _ = writeln!(
            t,
            "  {}: {} of {} alerts",
            r.rule_id, r.false_positives, r.total
        );
    }
    let _ = writeln!(t, "Silent devices: {}", f.silent.len());
    for s in &f.silent {
        let _ = writeln!(
            t,
            "  {} ({}), last seen {}",
            s.station,
            if s.grp.is_empty() { "no group" } else { &s.grp },
            s.last_seen_ms
                .map(|ms| f.zone.format(ms))
                .unwrap_or_else(|| "never".into())
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "For governors' oversight:");
    let _ = writeln!(t, "Rule changes this week: {}", f.rule_changes.len());
    for r in &f.rule_changes {
        let _ = writeln!(
            t,
            "  {} pack {} version {}, published {}",
            if r.shadow { "shadow" } else { "live" },
            r.pack_id,
            r.version,
            f.zone.format(r.published_ms)
        );
    }
    let _ = writeln!(
        t,
        "Curriculum exemptions made or revoked this week: {}",
        f.exemptions.len()
    );
    for e in &f.exemptions {
        let _ = writeln!(t, "  {}", exemption_line(f, e));
    }
    let _ = writeln!(t, "{}", notice_line(f));
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Review alerts in the console: {}/queue\nThis email holds no captures or typed text.",
        f.console_url
    );
    t
}

fn zone_name(f: &Figures) -> String {
    f.zone.describe()
}

fn exemption_line(f: &Figures, e: &crate::exemption::Exemption) -> String {
    let what = e.target();
    let revoked = e
        .revoked_ms
        .map(|ms| format!("; revoked {}", f.zone.format(ms)))
        .unwrap_or_default();
    format!(
        "group {}: {what}, {} to {}, by {} ({}){revoked}",
        e.grp,
        f.zone.format(e.starts_ms),
        f.zone.format(e.ends_ms),
        e.created_by,
        e.reason
    )
}

/// The HTML part; `chart_src` is `cid:chart` in the email or a `data:` URI in a preview.
pub fn html(f: &Figures, chart_src: &str) -> String {
    let mut h = String::new();
    let th =
        r#"style="text-align:left;padding:4px 8px;border-bottom:1px solid #ccc;font-weight:600""#;
    let td = r#"style="padding:4px 8px;border-bottom:1px solid #eee""#;
    let tdn = r#"style="padding:4px 8px;border-bottom:1px solid #eee;text-align:right""#;
    let thn =
        r#"style="text-align:right;padding:4px 8px;border-bottom:1px solid #ccc;font-weight:600""#;
    let _ = write!(
        h,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body style="margin:0;padding:16px;background:#f4f4f4;font-family:'DejaVu Sans',Arial,sans-serif;color:#222"><div style="max-width:680px;margin:0 auto;background:#fff;padding:20px 24px;border:1px solid #ddd">"#,
        title = esc(&subject(f))
    );
    let _ = write!(
        h,
        r#"<h1 style="font-size:20px;margin:0 0 4px">Tutela weekly summary</h1><p style="margin:0 0 16px;color:#555">{} ({}){}</p>"#,
        esc(&week_span(f)),
        esc(&zone_name(f)),
        if f.audience == Audience::Staff {
            "<br>Alerts about staff accounts only."
        } else {
            ""
        }
    );
    let _ = write!(
        h,
        r#"<p style="font-size:16px" id="total"><b>{}</b> alerts this week; previous week {}, change <b>{}</b>.</p>"#,
        f.total,
        f.previous_total,
        change(f.total, f.previous_total)
    );
    // Categories by severity.
    let _ = write!(
        h,
        r#"<table id="categories" style="border-collapse:collapse;width:100%;font-size:14px"><thead><tr><th {th}>Category</th><th {thn}>Sev 1</th><th {thn}>2</th><th {thn}>3</th><th {thn}>4</th><th {thn}>5</th><th {thn}>Total</th><th {thn}>Week before</th><th {thn}>Change</th></tr></thead><tbody>"#
    );
    for (i, c) in f.categories.iter().enumerate() {
        let (r, g, b) = chart::colour(i);
        let _ = write!(
            h,
            r#"<tr><td {td}><span style="display:inline-block;width:10px;height:10px;background:#{r:02x}{g:02x}{b:02x};margin-right:6px"></span>{}</td>"#,
            esc(&c.category)
        );
        for (s, n) in c.by_severity.iter().enumerate() {
            let weight = if s >= 3 && *n > 0 {
                "font-weight:700;color:#b00000;"
            } else {
                ""
            };
            let _ = write!(
                h,
                r#"<td style="padding:4px 8px;border-bottom:1px solid #eee;text-align:right;{weight}">{n}</td>"#
            );
        }
        let _ = write!(
            h,
            "<td {tdn}><b>{}</b></td><td {tdn}>{}</td><td {tdn}>{}</td></tr>",
            c.total,
            c.previous,
            change(c.total, c.previous)
        );
    }
    if f.categories.is_empty() {
        let _ = write!(h, r#"<tr><td {td} colspan="9">No alerts.</td></tr>"#);
    }
    let _ = write!(h, "</tbody></table>");
    // Chart.
    let _ = write!(
        h,
        r#"<h2 style="font-size:16px;margin:20px 0 6px">Alerts per day</h2><img src="{}" width="{}" height="{}" alt="Alerts per day by category" style="max-width:100%;height:auto;border:1px solid #eee"><p style="font-size:12px;margin:4px 0 0">"#,
        esc(chart_src),
        chart::WIDTH,
        chart::HEIGHT
    );
    for (i, c) in f.categories.iter().enumerate() {
        let (r, g, b) = chart::colour(i);
        let _ = write!(
            h,
            r#"<span style="white-space:nowrap;margin-right:12px"><span style="display:inline-block;width:10px;height:10px;background:#{r:02x}{g:02x}{b:02x};margin-right:4px"></span>{}</span>"#,
            esc(&c.category)
        );
    }
    let _ = write!(h, "</p>");
    // Review.
    let _ = write!(
        h,
        r#"<h2 style="font-size:16px;margin:20px 0 6px">Review</h2><table style="border-collapse:collapse;font-size:14px">"#
    );
    let oldest = f
        .oldest_unreviewed_ms
        .map(|ms| format!(" (oldest waiting {})", duration(f.generated_ms - ms)))
        .unwrap_or_default();
    let _ = write!(
        h,
        r#"<tr><td {td}>Unreviewed alerts</td><td {td} id="unreviewed"><b>{}</b>{}</td></tr>"#,
        f.unreviewed,
        esc(&oldest)
    );
    let median = f
        .median_first_review_ms
        .map(|ms| format!("{} ({} alerts reviewed)", duration(ms), f.reviewed))
        .unwrap_or_else(|| "none reviewed yet".into());
    let _ = write!(
        h,
        r#"<tr><td {td}>Median time to first review</td><td {td} id="median">{}</td></tr>"#,
        esc(&median)
    );
    if f.audience == Audience::Pupils {
        let _ = write!(
            h,
            r#"<tr><td {td}>Alerts about staff</td><td {td} id="staff">{} (the head teacher reviews these; not listed here)</td></tr>"#,
            f.staff_alerts
        );
    }
    let _ = write!(h, "</table>");
    // Most severe.
    let _ = write!(
        h,
        r#"<h2 style="font-size:16px;margin:20px 0 6px">Most severe alerts this week</h2><table id="top" style="border-collapse:collapse;width:100%;font-size:14px"><thead><tr><th {th}>Severity</th><th {th}>Category</th><th {th}>Time</th><th {th}>State</th><th {th}></th></tr></thead><tbody>"#
    );
    for a in &f.top {
        let link = format!("{}/alerts/{}", f.console_url, a.id);
        let _ = write!(
            h,
            r#"<tr><td {td}><b>{}</b></td><td {td}>{}</td><td {td}>{}</td><td {td}>{}</td><td {td}><a href="{}">Open alert {}</a></td></tr>"#,
            a.severity,
            esc(&a.category),
            esc(&f.zone.format(a.time_ms)),
            esc(state_label(&a.state)),
            esc(&link),
            a.id
        );
    }
    if f.top.is_empty() {
        let _ = write!(h, r#"<tr><td {td} colspan="5">None.</td></tr>"#);
    }
    let _ = write!(h, "</tbody></table>");
    // False positives.
    let _ = write!(
        h,
        r#"<h2 style="font-size:16px;margin:20px 0 6px">Rules with the most false positives</h2><table id="fp" style="border-collapse:collapse;font-size:14px"><thead><tr><th {th}>Rule</th><th {thn}>False positives</th><th {thn}>Alerts</th></tr></thead><tbody>"#
    );
    for r in &f.fp_rules {
        let _ = write!(
            h,
            "<tr><td {td}>{}</td><td {tdn}>{}</td><td {tdn}>{}</td></tr>",
            esc(&r.rule_id),
            r.false_positives,
            r.total
        );
    }
    if f.fp_rules.is_empty() {
        let _ = write!(h, r#"<tr><td {td} colspan="3">None.</td></tr>"#);
    }
    let _ = write!(h, "</tbody></table>");
    // Silent devices.
    let _ = write!(
        h,
        r#"<h2 style="font-size:16px;margin:20px 0 6px">Silent devices: {}</h2>"#,
        f.silent.len()
    );
    if !f.silent.is_empty() {
        let _ = write!(h, r#"<ul id="silent" style="font-size:14px">"#);
        for s in &f.silent {
            let _ = write!(
                h,
                "<li>{} ({}), last seen {}</li>",
                esc(&s.station),
                esc(if s.grp.is_empty() { "no group" } else { &s.grp }),
                esc(&s
                    .last_seen_ms
                    .map(|ms| f.zone.format(ms))
                    .unwrap_or_else(|| "never".into()))
            );
        }
        let _ = write!(h, "</ul>");
    }
    // Oversight.
    let _ = write!(
        h,
        r#"<h2 style="font-size:16px;margin:20px 0 6px">For governors' oversight</h2><p style="font-size:14px;margin:4px 0">Rule changes this week: <b>{}</b></p>"#,
        f.rule_changes.len()
    );
    if !f.rule_changes.is_empty() {
        let _ = write!(h, r#"<ul style="font-size:14px">"#);
        for r in &f.rule_changes {
            let _ = write!(
                h,
                "<li>{} pack {} version {}, published {}</li>",
                if r.shadow { "Shadow" } else { "Live" },
                esc(&r.pack_id),
                r.version,
                esc(&f.zone.format(r.published_ms))
            );
        }
        let _ = write!(h, "</ul>");
    }
    let _ = write!(
        h,
        r#"<p style="font-size:14px;margin:4px 0">Curriculum exemptions made or revoked this week: <b>{}</b></p>"#,
        f.exemptions.len()
    );
    if !f.exemptions.is_empty() {
        let _ = write!(h, r#"<ul style="font-size:14px">"#);
        for e in &f.exemptions {
            let _ = write!(h, "<li>{}</li>", esc(&exemption_line(f, e)));
        }
        let _ = write!(h, "</ul>");
    }
    let _ = write!(
        h,
        r#"<p style="font-size:14px;margin:4px 0" id="notice">{}</p>"#,
        esc(&notice_line(f))
    );
    let _ = write!(
        h,
        r#"<p style="font-size:12px;color:#666;margin-top:24px">Review alerts in the <a href="{}/queue">Tutela console</a>. This email holds no captures or typed text. Generated {}.</p></div></body></html>"#,
        esc(&f.console_url),
        esc(&f.zone.format(f.generated_ms))
    );
    h
}
