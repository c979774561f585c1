//! URLs: the host for domain lists, and search queries pulled out of search engine URLs.

use crate::matcher::{snippet, Match, Matcher};
use crate::Scope;
use std::ops::Range;

struct Parts<'a> {
    host: Range<usize>,
    path: &'a str,
    path_range: Range<usize>,
    query: Range<usize>,
    fragment: Range<usize>,
}

fn parts(url: &str) -> Option<Parts<'_>> {
    let mut begin = 0;
    if let Some(i) = url.find("://") {
        let scheme = &url[..i];
        if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            begin = i + 3;
        }
    }
    let rest = &url[begin..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let host_start = authority.rfind('@').map(|i| i + 1).unwrap_or(0);
    let host_and_port = &authority[host_start..];
    let host_len = if host_and_port.starts_with('[') {
        host_and_port
            .find(']')
            .map(|i| i + 1)
            .unwrap_or(host_and_port.len())
    } else {
        host_and_port.find(':').unwrap_or(host_and_port.len())
    };
    if host_len == 0 {
        return None;
    }
    let host = begin + host_start..begin + host_start + host_len;
    let after = begin + authority_len;
    let tail = &url[after..];
    let fragment_at = tail.find('#').map(|i| after + i).unwrap_or(url.len());
    let query_at = url[after..fragment_at].find('?').map(|i| after + i);
    let path_end = query_at.unwrap_or(fragment_at);
    Some(Parts {
        host,
        path: &url[after..path_end],
        path_range: after..path_end,
        query: query_at
            .map(|q| q + 1..fragment_at)
            .unwrap_or(fragment_at..fragment_at),
        fragment: (fragment_at + 1).min(url.len())..url.len(),
    })
}

/// The host of a URL, lower case, without port, user info or trailing dot.
pub fn host_of(url: &str) -> Option<String> {
    let p = parts(url.trim())?;
    let host = url.trim()[p.host]
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Percent-decode a query value (`+` is a space).
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The raw value range of the first parameter named one of `names` in `range` of `url`.
fn param(url: &str, range: Range<usize>, names: &[&str]) -> Option<Range<usize>> {
    let mut at = range.start;
    for pair in url[range].split(['&', ';']) {
        let (key, value_at) = match pair.find('=') {
            Some(i) => (&pair[..i], at + i + 1),
            None => (pair, at + pair.len()),
        };
        if names.iter().any(|n| decode(key) == *n) {
            return Some(value_at..at + pair.len());
        }
        at += pair.len() + 1;
    }
    None
}

/// The search query of a Google, Bing, DuckDuckGo, Yahoo, Ecosia, YouTube, Wikipedia,
/// TikTok or Reddit search URL, decoded, with the raw range of it in the URL.
pub(crate) fn search_query_span(url: &str) -> Option<(String, Range<usize>)> {
    let p = parts(url)?;
    let host = url[p.host.clone()]
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let has = |l: &str| labels.contains(&l);
    let on = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    let path = p.path.to_ascii_lowercase();
    let from_query = |names: &[&str]| param(url, p.query.clone(), names);
    let raw = if has("google") {
        if path.starts_with("/search") || path == "/" || path.is_empty() || path == "/webhp" {
            from_query(&["q"]).or_else(|| param(url, p.fragment.clone(), &["q"]))
        } else {
            None
        }
    } else if on("bing.com") {
        path.starts_with("/search")
            .then(|| from_query(&["q"]))
            .flatten()
    } else if on("duckduckgo.com") {
        from_query(&["q"])
    } else if has("yahoo") {
        (labels.contains(&"search") || path.starts_with("/search"))
            .then(|| from_query(&["p", "q"]))
            .flatten()
    } else if on("ecosia.org") {
        from_query(&["q"])
    } else if on("youtube.com") {
        path.starts_with("/results")
            .then(|| from_query(&["search_query", "q"]))
            .flatten()
    } else if on("wikipedia.org") {
        let special = "/wiki/special:search/";
        if path.starts_with(special) {
            Some(p.path_range.start + special.len()..p.path_range.end)
        } else {
            from_query(&["search"])
        }
    } else if on("tiktok.com") {
        path.starts_with("/search")
            .then(|| from_query(&["q"]))
            .flatten()
    } else if on("reddit.com") {
        path.contains("/search")
            .then(|| from_query(&["q"]))
            .flatten()
    } else {
        None
    }?;
    let query = decode(&url[raw.clone()]);
    let query = query.trim();
    (!query.is_empty()).then(|| (query.to_string(), raw))
}

/// The search query in a search engine URL (Google, Bing, DuckDuckGo, Yahoo, Ecosia,
/// YouTube, Wikipedia, TikTok, Reddit), decoded; `None` for any other URL.
pub fn search_query(url: &str) -> Option<String> {
    search_query_span(url.trim()).map(|(q, _)| q)
}

impl Matcher {
    /// Matches for a visited URL: the host against the domain lists, the URL against
    /// url-scope terms, and the search query of known engines against search-scope terms.
    /// Spans are byte spans in `url`; a search-query match spans the whole query value,
    /// and its context is the decoded query.
    pub fn find_url(&self, url: &str) -> Vec<Match> {
        let mut out = Vec::new();
        if let Some(p) = parts(url) {
            let host = url[p.host.clone()]
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let mut suffix = host.as_str();
            loop {
                if let Some(cats) = self.domain_categories(suffix) {
                    for &c in cats {
                        let cat = &self.categories[c];
                        let (context, context_span) = snippet(url, p.host.clone());
                        out.push(Match {
                            rule_id: format!("{}/domain:{suffix}", cat.id).into(),
                            category: cat.id.as_str().into(),
                            severity: cat.severity,
                            term: suffix.into(),
                            scope: Scope::Url,
                            span: p.host.clone(),
                            context,
                            context_span,
                            capture: cat.capture,
                        });
                    }
                }
                match suffix.find('.') {
                    Some(i) => suffix = &suffix[i + 1..],
                    None => break,
                }
            }
        }
        if let Some((query, raw)) = search_query_span(url) {
            for mut m in self.find(Scope::Search, &query) {
                m.span = raw.clone();
                out.push(m);
            }
        }
        for m in self.find(Scope::Url, url) {
            if !out.iter().any(|o| o.rule_id == m.rule_id) {
                out.push(m);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines() {
        let q = |u: &str| search_query(u);
        assert_eq!(
            q("https://www.google.co.uk/search?client=x&q=how+to+tie+a+noose&oq=").as_deref(),
            Some("how to tie a noose")
        );
        assert_eq!(
            q("https://www.google.com/#q=hello%20there").as_deref(),
            Some("hello there")
        );
        assert_eq!(
            q("https://www.bing.com/search?q=caf%C3%A9").as_deref(),
            Some("café")
        );
        assert_eq!(
            q("https://duckduckgo.com/?q=a+b&t=h_").as_deref(),
            Some("a b")
        );
        assert_eq!(
            q("https://uk.search.yahoo.com/search?p=test").as_deref(),
            Some("test")
        );
        assert_eq!(
            q("https://www.ecosia.org/search?method=index&q=trees").as_deref(),
            Some("trees")
        );
        assert_eq!(
            q("https://www.youtube.com/results?search_query=minecraft+mods").as_deref(),
            Some("minecraft mods")
        );
        assert_eq!(
            q("https://en.wikipedia.org/w/index.php?search=self+harm&title=Special").as_deref(),
            Some("self harm")
        );
        assert_eq!(
            q("https://en.wikipedia.org/wiki/Special:Search/knife_crime").as_deref(),
            Some("knife_crime")
        );
        assert_eq!(
            q("https://www.tiktok.com/search?q=diet%20tips").as_deref(),
            Some("diet tips")
        );
        assert_eq!(
            q("https://www.reddit.com/r/all/search/?q=vape").as_deref(),
            Some("vape")
        );
        assert_eq!(q("https://www.google.com/maps?q=london"), None);
        assert_eq!(q("https://example.org/search?q=x"), None);
        assert_eq!(q("not a url"), None);
        assert_eq!(q("https://www.bing.com/search?q=%"), Some("%".to_string()));
        assert_eq!(
            q("https://www.bing.com/search?q=%4"),
            Some("%4".to_string())
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_of("https://User@WWW.Example.org:8080/x").as_deref(),
            Some("www.example.org")
        );
        assert_eq!(host_of("example.org/path").as_deref(), Some("example.org"));
        assert_eq!(host_of("http://[::1]:80/").as_deref(), Some("[::1]"));
        assert_eq!(host_of(""), None);
    }
}
