//! Mail set-up and reading for the summary and notification tests: the
//! `[mail]` section pointing at an SMTP server on loopback, recipients for
//! each role, and the parts and alert links of a parsed message.

use serde_json::Value;

use crate::Collector;

/// The console address the mail links point at.
pub const CONSOLE: &str = "https://console.school.test";

/// `[mail]` pointing at `port` on loopback with the given recipients.
pub fn mail_section(port: u16, recipients: &[(&str, &str)]) -> String {
    let mut s = format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"Tutela <tutela@school.test>\"\n\
         console_url = \"{CONSOLE}\"\nurgent_interval_secs = 2\nretry_initial_secs = 1\nretry_max_secs = 2\n"
    );
    for (address, role) in recipients {
        s.push_str(&format!(
            "\n[[mail.recipients]]\naddress = \"{address}\"\nroles = [\"{role}\"]\n"
        ));
    }
    s
}

/// One recipient for each role.
pub const RECIPIENTS: [(&str, &str); 4] = [
    ("dsl@school.test", "dsl"),
    ("deputy@school.test", "deputy-dsl"),
    ("head@school.test", "head"),
    ("technician@school.test", "technician"),
];

/// The collector `c` set to mail `RECIPIENTS` through `smtp_port` with
/// `[summary]` set to `summary` (console off, London time, staff `mr.*`).
pub fn configure(c: &Collector, smtp_port: u16, summary: &str) {
    c.set_section(
        "console",
        "enabled = false\ntime_zone = \"Europe/London\"\nstaff_pattern = \"mr.*\"",
    )
    .unwrap();
    c.set_section("mail", &mail_section(smtp_port, &RECIPIENTS))
        .unwrap();
    c.set_section("summary", summary).unwrap();
}

/// The part of parsed `email` with `content_type`.
pub fn part<'a>(email: &'a Value, content_type: &str) -> &'a Value {
    email["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == content_type)
        .unwrap_or_else(|| panic!("no {content_type} part in {email}"))
}

/// Every alert id linked from `text`.
pub fn linked_ids(text: &str) -> Vec<i64> {
    text.split(&format!("{CONSOLE}/alerts/"))
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        })
        .collect()
}
