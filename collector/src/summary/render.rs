//! The summary as HTML (inline styles, for mail readers) and plain text.
//! Alerts appear as severity, category, time, state and a console link:
//! never captures or typed text.

use std::fmt::Write;

use maud::{html, DOCTYPE};

use super::chart;
use super::content::{Audience, Figures};
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
    let school = f
        .school_name
        .as_deref()
        .map(|name| format!("{}, ", one_line(name)))
        .unwrap_or_default();
    format!(
        "Tutela weekly summary{who}: {school}week of {}",
        long_date(&f.week.label())
    )
}

/// In a school's summary, what holds for every school is marked so.
fn trust_wide(f: &Figures) -> &'static str {
    if f.school_name.is_some() {
        " (trust-wide, every school)"
    } else {
        ""
    }
}

/// In a school's summary whose exemptions all hold for every school, the
/// heading says so; when some are the school's own, each trust-wide one is
/// marked instead.
fn exemptions_mark(f: &Figures) -> &'static str {
    if f.exemptions.iter().all(|e| e.school.is_empty()) {
        trust_wide(f)
    } else {
        ""
    }
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
    let at = if f.school_name.is_some() {
        " at this school's stations"
    } else {
        ""
    };
    format!(
        "Monitoring notice{at}: {} acknowledgement(s) this week; {} pupil(s) have accepted their group's current version, {} have not yet.",
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
    let _ = writeln!(
        t,
        "Rule changes this week{}: {}",
        trust_wide(f),
        f.rule_changes.len()
    );
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
        "Curriculum exemptions made or revoked this week{}: {}",
        exemptions_mark(f),
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
    let mark = if e.school.is_empty() && exemptions_mark(f).is_empty() {
        trust_wide(f)
    } else {
        ""
    };
    format!(
        "group {}: {what}, {} to {}, by {} ({}){revoked}{mark}",
        e.grp,
        f.zone.format(e.starts_ms),
        f.zone.format(e.ends_ms),
        e.created_by,
        e.reason
    )
}

/// The HTML part; `chart_src` is `cid:chart` in the email or a `data:` URI in a preview.
pub fn html(f: &Figures, chart_src: &str) -> String {
    // Mail readers ignore style sheets: every element carries its style.
    const TH: &str = "text-align:left;padding:4px 8px;border-bottom:1px solid #ccc;font-weight:600";
    const TD: &str = "padding:4px 8px;border-bottom:1px solid #eee";
    const TDN: &str = "padding:4px 8px;border-bottom:1px solid #eee;text-align:right";
    const THN: &str =
        "text-align:right;padding:4px 8px;border-bottom:1px solid #ccc;font-weight:600";
    const H2: &str = "font-size:16px;margin:20px 0 6px";
    const P14: &str = "font-size:14px;margin:4px 0";
    let swatch = |i: usize, gap: u8| {
        let (r, g, b) = chart::colour(i);
        format!(
            "display:inline-block;width:10px;height:10px;background:#{r:02x}{g:02x}{b:02x};margin-right:{gap}px"
        )
    };
    let oldest = f
        .oldest_unreviewed_ms
        .map(|ms| format!(" (oldest waiting {})", duration(f.generated_ms - ms)))
        .unwrap_or_default();
    let median = f
        .median_first_review_ms
        .map(|ms| format!("{} ({} alerts reviewed)", duration(ms), f.reviewed))
        .unwrap_or_else(|| "none reviewed yet".into());
    let page = html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { (subject(f)) } }
            body style="margin:0;padding:16px;background:#f4f4f4;font-family:'DejaVu Sans',Arial,sans-serif;color:#222" {
                div style="max-width:680px;margin:0 auto;background:#fff;padding:20px 24px;border:1px solid #ddd" {
                    h1 style="font-size:20px;margin:0 0 4px" { "Tutela weekly summary" }
                    p style="margin:0 0 16px;color:#555" {
                        (week_span(f)) " (" (zone_name(f)) ")"
                        @if f.audience == Audience::Staff { br; "Alerts about staff accounts only." }
                    }
                    p style="font-size:16px" id="total" {
                        b { (f.total) } " alerts this week; previous week " (f.previous_total) ", change "
                        b { (change(f.total, f.previous_total)) } "."
                    }
                    // Categories by severity.
                    table id="categories" style="border-collapse:collapse;width:100%;font-size:14px" {
                        thead { tr {
                            th style=(TH) { "Category" } th style=(THN) { "Sev 1" } th style=(THN) { "2" }
                            th style=(THN) { "3" } th style=(THN) { "4" } th style=(THN) { "5" }
                            th style=(THN) { "Total" } th style=(THN) { "Week before" } th style=(THN) { "Change" }
                        } }
                        tbody {
                            @for (i, c) in f.categories.iter().enumerate() {
                                tr {
                                    td style=(TD) { span style=(swatch(i, 6)) {} (c.category) }
                                    @for (s, n) in c.by_severity.iter().enumerate() {
                                        td style={
                                            "padding:4px 8px;border-bottom:1px solid #eee;text-align:right;"
                                            @if s >= 3 && *n > 0 { "font-weight:700;color:#b00000;" }
                                        } { (n) }
                                    }
                                    td style=(TDN) { b { (c.total) } }
                                    td style=(TDN) { (c.previous) }
                                    td style=(TDN) { (change(c.total, c.previous)) }
                                }
                            }
                            @if f.categories.is_empty() {
                                tr { td style=(TD) colspan="9" { "No alerts." } }
                            }
                        }
                    }
                    // Chart.
                    h2 style=(H2) { "Alerts per day" }
                    img src=(chart_src) width=(chart::WIDTH) height=(chart::HEIGHT) alt="Alerts per day by category"
                        style="max-width:100%;height:auto;border:1px solid #eee";
                    p style="font-size:12px;margin:4px 0 0" {
                        @for (i, c) in f.categories.iter().enumerate() {
                            span style="white-space:nowrap;margin-right:12px" {
                                span style=(swatch(i, 4)) {} (c.category)
                            }
                        }
                    }
                    // Review.
                    h2 style=(H2) { "Review" }
                    table style="border-collapse:collapse;font-size:14px" {
                        tr {
                            td style=(TD) { "Unreviewed alerts" }
                            td style=(TD) id="unreviewed" { b { (f.unreviewed) } (oldest) }
                        }
                        tr {
                            td style=(TD) { "Median time to first review" }
                            td style=(TD) id="median" { (median) }
                        }
                        @if f.audience == Audience::Pupils {
                            tr {
                                td style=(TD) { "Alerts about staff" }
                                td style=(TD) id="staff" {
                                    (f.staff_alerts) " (the head teacher reviews these; not listed here)"
                                }
                            }
                        }
                    }
                    // Most severe.
                    h2 style=(H2) { "Most severe alerts this week" }
                    table id="top" style="border-collapse:collapse;width:100%;font-size:14px" {
                        thead { tr {
                            th style=(TH) { "Severity" } th style=(TH) { "Category" } th style=(TH) { "Time" }
                            th style=(TH) { "State" } th style=(TH) {}
                        } }
                        tbody {
                            @for a in &f.top {
                                tr {
                                    td style=(TD) { b { (a.severity) } }
                                    td style=(TD) { (a.category) }
                                    td style=(TD) { (f.zone.format(a.time_ms)) }
                                    td style=(TD) { (state_label(&a.state)) }
                                    td style=(TD) {
                                        a href={ (f.console_url) "/alerts/" (a.id) } { "Open alert " (a.id) }
                                    }
                                }
                            }
                            @if f.top.is_empty() {
                                tr { td style=(TD) colspan="5" { "None." } }
                            }
                        }
                    }
                    // False positives.
                    h2 style=(H2) { "Rules with the most false positives" }
                    table id="fp" style="border-collapse:collapse;font-size:14px" {
                        thead { tr {
                            th style=(TH) { "Rule" } th style=(THN) { "False positives" } th style=(THN) { "Alerts" }
                        } }
                        tbody {
                            @for r in &f.fp_rules {
                                tr {
                                    td style=(TD) { (r.rule_id) }
                                    td style=(TDN) { (r.false_positives) }
                                    td style=(TDN) { (r.total) }
                                }
                            }
                            @if f.fp_rules.is_empty() {
                                tr { td style=(TD) colspan="3" { "None." } }
                            }
                        }
                    }
                    // Silent devices.
                    h2 style=(H2) { "Silent devices: " (f.silent.len()) }
                    @if !f.silent.is_empty() {
                        ul id="silent" style="font-size:14px" {
                            @for s in &f.silent {
                                li {
                                    (s.station) " (" (if s.grp.is_empty() { "no group" } else { &s.grp })
                                    "), last seen "
                                    @match s.last_seen_ms { Some(ms) => (f.zone.format(ms)), None => "never" }
                                }
                            }
                        }
                    }
                    // Oversight.
                    h2 style=(H2) { "For governors' oversight" }
                    p style=(P14) { "Rule changes this week" (trust_wide(f)) ": " b { (f.rule_changes.len()) } }
                    @if !f.rule_changes.is_empty() {
                        ul style="font-size:14px" {
                            @for r in &f.rule_changes {
                                li {
                                    (if r.shadow { "Shadow" } else { "Live" }) " pack " (r.pack_id)
                                    " version " (r.version) ", published " (f.zone.format(r.published_ms))
                                }
                            }
                        }
                    }
                    p style=(P14) {
                        "Curriculum exemptions made or revoked this week" (exemptions_mark(f)) ": " b { (f.exemptions.len()) }
                    }
                    @if !f.exemptions.is_empty() {
                        ul style="font-size:14px" {
                            @for e in &f.exemptions { li { (exemption_line(f, e)) } }
                        }
                    }
                    p style=(P14) id="notice" { (notice_line(f)) }
                    p style="font-size:12px;color:#666;margin-top:24px" {
                        "Review alerts in the " a href={ (f.console_url) "/queue" } { "Tutela console" }
                        ". This email holds no captures or typed text. Generated "
                        (f.zone.format(f.generated_ms)) "."
                    }
                }
            }
        }
    };
    page.into_string()
}
