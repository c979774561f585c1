use super::heartbeat::agent_problems;

#[test]
fn agent_problems_are_kept_short_one_per_line_and_few() {
    assert_eq!(agent_problems(&[]), "");
    let many: Vec<String> = (0..20).map(|i| format!("problem {i}")).collect();
    let kept = agent_problems(&many);
    assert_eq!(
        kept.lines().count(),
        tutela_proto::limits::MAX_AGENT_PROBLEMS
    );
    assert!(kept.starts_with("problem 0\nproblem 1\n"));
    // New lines inside a problem cannot forge another line; blanks are dropped.
    let odd = agent_problems(&["a\nforged\tline".into(), "  ".into(), "é".repeat(200)]);
    let lines: Vec<&str> = odd.lines().collect();
    assert_eq!(lines[0], "a forged line");
    assert_eq!(lines.len(), 2);
    assert!(lines[1].len() <= tutela_proto::limits::MAX_NAME_BYTES);
    assert!(
        lines[1].chars().all(|c| c == 'é'),
        "cut at a character boundary"
    );
}
