//! The pupil-like text the shipped-pack timings use: eight 80-character window titles (two
//! of them risky) and a typed window fed one character at a time.

pub const TITLES: [&str; 8] = [
    "Year 10 homework - causes of the First World War - Google Docs - Chromium",
    "i just want to die - Google Search - Mozilla Firefox",
    "BBC Bitesize - KS3 Science - The effects of drugs on the body",
    "Minecraft 1.20 - how to kill the ender dragon fast - YouTube",
    "Untitled document - Google Docs",
    "why do people hate muslims - Google Search",
    "Premier League: Arsenal 2-1 Chelsea - live scores and reaction",
    "Macbeth Act 5 Scene 5 - Tomorrow and tomorrow - revision notes",
];

pub const TYPED: &str = "ok so i finished the maths homework but the history essay on the holocaust is \
    taking ages. honestly i feel like giving up sometimes, everyone in the group chat hates me and \
    i just wanna sleep forever lol. anyway are you coming to football tomorrow? we play the year 11s \
    and they are so good, we are going to get destroyed. text me back x ";

/// Each title padded with spaces to 80 characters.
pub fn titles() -> Vec<String> {
    TITLES
        .iter()
        .map(|t| t.chars().chain(std::iter::repeat(' ')).take(80).collect())
        .collect()
}
