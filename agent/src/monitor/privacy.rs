//! Sign-in and password windows: nothing typed there is kept.

/// Words in a window title that mark a sign-in or password prompt: nothing
/// typed there is kept.
const PRIVATE_TITLE_WORDS: &[&str] = &[
    "password",
    "passwort",
    "passcode",
    "sign in",
    "sign-in",
    "signin",
    "log in",
    "log-in",
    "login",
    "logon",
    "authenticat",
    "verification code",
    "2-step",
    "two-factor",
    "one-time code",
    "enter pin",
    "cyfrinair",
    "mewngofnodi",
];

/// Window titles of the operating system's own credential prompts
/// (Windows: CredUI, RunAs, mapped drives, Windows Hello; Microsoft sign-in).
const PRIVATE_SYSTEM_TITLES: &[&str] = &["windows security", "microsoft account", "credential"];

/// Programs that only ever ask for credentials.
const PRIVATE_APPS: &[&str] = &[
    "credentialuibroker",
    "consent",
    "logonui",
    "credentialenrollmentmanager",
    "pinentry",
    "polkit-gnome-authentication-agent-1",
    "gcr-prompter",
];

/// Whether a window title marks a sign-in or password prompt.
pub fn is_private_title(title: &str) -> bool {
    let lower = title.to_lowercase();
    PRIVATE_TITLE_WORDS.iter().any(|w| lower.contains(w))
        || PRIVATE_SYSTEM_TITLES.iter().any(|w| lower.contains(w))
}

/// Whether a window (by title or by the program that owns it) is a sign-in
/// or password prompt: nothing typed there is kept.
pub fn is_private_window(title: &str, app_name: &str) -> bool {
    let app = app_name.to_lowercase();
    let app = app.strip_suffix(".exe").unwrap_or(&app);
    is_private_title(title) || PRIVATE_APPS.contains(&app)
}
