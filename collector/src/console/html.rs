//! The console's page shell and shared pieces, as maud templates: markup is
//! checked when the collector is compiled and every value is escaped, so no
//! page builds HTML from strings.

use maud::{html, Markup, DOCTYPE};

use super::auth::Viewer;

/// Percent-encodes a query value.
pub fn url_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The hidden CSRF field every form carries.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A full page: header with navigation for the viewer's role, then `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> String {
    page_with_head(title, viewer, html! {}, body)
}

/// A full page with extra elements in its head (e.g. a refresh).
pub fn page_with_head(
    title: &str,
    viewer: Option<&Viewer>,
    extra_head: Markup,
    body: Markup,
) -> String {
    html! {
        (DOCTYPE) "\n"
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1"; "\n"
                title { (title) " - Tutela" }
                link rel="stylesheet" href="/assets/console.css";
                (extra_head)
            }
            "\n"
            body {
                header {
                    span.brand { "Tutela" }
                    nav { @if let Some(v) = viewer { (nav(v)) } }
                }
                "\n"
                main { (body) }
                script src="/assets/console.js" {}
            }
        }
    }
    .into_string()
}

/// The navigation for the viewer's role, and their name with Sign out.
fn nav(v: &Viewer) -> Markup {
    html! {
        @if v.queue.any() { a href="/queue" { "Queue" } }
        @if v.role.reviews() {
            a href="/rules" { "Rules" }
            a href="/subject-access" { "Subject access" }
            a href="/notices" { "Notice" }
        }
        @if v.role.sees_fleet() {
            a href="/fleet" { "Fleet" }
            a href="/exemptions" { "Exemptions" }
        }
        @if super::publish::may_publish(v.role) {
            a href="/rules/publish" { "Publish rules" }
            a href="/tokens" { "Tokens" }
        }
        @if v.role.audits() { a href="/audit" { "Audit log" } }
        @if v.role == super::auth::Role::Dsl { a href="/settings" { "Settings" } }
        span.who {
            (v.name) " (" (v.role.as_str())
            // An account of several grants sees which it acts under.
            @if v.grants > 1 {
                @match v.school.schools() {
                    None => { " for the trust" }
                    Some(ids) => { " at " (ids.join(", ")) }
                }
            }
            ")"
        }
        @if v.grants > 1 { a href="/grants" #switch-grant { "Switch role" } }
        form method="post" action="/logout" class="inline" {
            (csrf(v))
            button type="submit" { "Sign out" }
        }
    }
}

/// A `<select>` with `current` selected; options are (value, label).
pub fn select(name: &str, options: &[(&str, &str)], current: &str) -> Markup {
    html! {
        select name=(name) {
            @for (value, label) in options {
                option value=(value) selected[*value == current] { (label) }
            }
        }
    }
}

pub const CSS: &str = r#"
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2230;background:#f5f6f8}
header{display:flex;align-items:center;gap:16px;background:#23315a;color:#fff;padding:8px 16px}
header a{color:#fff;margin-right:14px;text-decoration:none;font-weight:600}header .brand{font-weight:700;font-size:17px}
header nav{display:flex;align-items:center;flex:1}header .who{margin-left:auto;margin-right:8px;opacity:.85}
main{padding:14px 16px;max-width:1400px;margin:0 auto}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:18px 0 8px}
tr.silent td{background:#fdecea}tr.flagged td{background:#fff4d6}tr.problem td{background:#fff4d6}table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:5px 7px;border-bottom:1px solid #e2e5ea;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600;white-space:nowrap}tr.fresh{background:#fff7d6}
td.ctx{max-width:420px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:#444}
.sev{display:inline-block;min-width:22px;text-align:center;border-radius:4px;color:#fff;font-weight:700;padding:0 5px}
.sev1{background:#6c7a89}.sev2{background:#3d7fb8}.sev3{background:#c98a00}.sev4{background:#d35400}.sev5{background:#b3001b}
.tag{font-size:11px;color:#555;border:1px solid #c5cad3;border-radius:3px;padding:0 4px}
.state{font-size:12px;border:1px solid #c5cad3;border-radius:10px;padding:0 7px;background:#fff;white-space:nowrap}
form.filters{display:flex;flex-wrap:wrap;gap:6px;align-items:end;margin-bottom:10px;background:#fff;padding:8px;border:1px solid #e2e5ea}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,textarea,button{font:inherit}input[type=text],input[type=date],input[type=password],select,textarea{padding:4px 6px;border:1px solid #b9bfca;border-radius:4px}
button{padding:4px 10px;border:1px solid #23315a;background:#23315a;color:#fff;border-radius:4px;cursor:pointer}
button.secondary{background:#fff;color:#23315a}form.inline{display:inline}
.counts a{margin-right:12px}.counts b{font-weight:700}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 12px;margin:0;background:#fff;padding:10px;border:1px solid #e2e5ea}
dl.facts dt{color:#555}dl.facts dd{margin:0;word-break:break-all}
.context{background:#fff;border:1px solid #e2e5ea;padding:10px;white-space:pre-wrap;word-break:break-word}
mark{background:#ffe066;padding:0 1px;font-weight:600}
.verified{color:#11743a;font-weight:700}.unverified{color:#b3001b;font-weight:700}
.capture img{max-width:100%;border:1px solid #c5cad3}.capture img.blurred{filter:blur(14px);width:100%;image-rendering:auto}
.capture .veil{position:relative;overflow:hidden;max-width:640px}
.panel{background:#fff;border:1px solid #e2e5ea;padding:10px;margin-bottom:12px}
.notes li{margin-bottom:6px}.muted{color:#667}.banner{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;margin-bottom:10px}
.error{background:#fde2e4;border:1px solid #d98a94;padding:6px 10px;margin-bottom:10px}
.login{max-width:340px;margin:60px auto;background:#fff;padding:20px;border:1px solid #e2e5ea}
.login label{display:block;margin-bottom:10px}.login input{width:100%}
.sso a.button{display:block;text-align:center;padding:6px 10px;border:1px solid #23315a;border-radius:4px;color:#23315a;font-weight:600;text-decoration:none}
.pager a{margin-right:12px}
.tag.report,.report{color:#23315a;font-weight:600}
main.concern{max-width:640px}main.concern textarea,main.concern input[type=text],main.concern select{width:100%}
@media print{header,form,.noprint{display:none}body{background:#fff}}
"#;

/// Polls the queue for new alerts and swaps the rows, counts and pager in
/// place, keeping the current filters; rows newer than the page's first load
/// are highlighted. Polls do not keep a session alive: when the session has
/// ended (401, or a redirect to the sign-in page) the script clears the
/// alerts from the page and goes to the sign-in page.
pub const JS: &str = r#"
(function(){
  var rows=document.getElementById('queue-rows');
  if(!rows)return;
  var counts=document.getElementById('queue-counts');
  var seen=parseInt(rows.getAttribute('data-max-id')||'0',10);
  var timer=null;
  function signedOut(){
    if(timer!==null){clearInterval(timer);timer=null;}
    rows.innerHTML='';rows.setAttribute('data-max-id','0');
    if(counts)counts.innerHTML='';
    var pager=document.getElementById('queue-pager');if(pager)pager.innerHTML='';
    var bulk=document.getElementById('bulk');if(bulk)bulk.remove();
    window.location.replace('/login');
  }
  function poll(){
    var q=new URLSearchParams(window.location.search);q.set('fragment','1');
    fetch('/queue?'+q.toString(),{credentials:'same-origin',redirect:'manual',headers:{'Accept':'application/json'}})
      .then(function(r){
        if(r.status===401||r.status===403||r.type==='opaqueredirect'||(r.redirected&&/\/login/.test(r.url))){signedOut();return null;}
        return r.ok?r.json():null;
      })
      .then(function(d){
        if(!d)return;
        if(d.max_id!==parseInt(rows.getAttribute('data-max-id')||'0',10)){
          rows.innerHTML=d.rows;rows.setAttribute('data-max-id',String(d.max_id));
          counts.innerHTML=d.counts;
          var pager=document.getElementById('queue-pager');
          if(pager&&typeof d.pager==='string')pager.innerHTML=d.pager;
          rows.querySelectorAll('tr[data-id]').forEach(function(tr){
            if(parseInt(tr.getAttribute('data-id'),10)>seen)tr.classList.add('fresh');
          });
        }
      }).catch(function(){});
  }
  timer=setInterval(poll,5000);
  var all=document.getElementById('select-all');
  if(all)all.addEventListener('change',function(){
    rows.querySelectorAll('input[name=id]').forEach(function(c){c.checked=all.checked;});
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::auth::{QueueAccess, Role};

    const HOSTILE: &str = r#"<script>alert("x")</script>' & "#;
    const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' &amp; ";

    #[test]
    fn the_shell_escapes_the_title_the_viewer_and_attribute_values() {
        let viewer = Viewer {
            name: HOSTILE.to_owned(),
            role: Role::Dsl,
            csrf: format!("tok\"{HOSTILE}"),
            session_hash: Vec::new(),
            queue: QueueAccess::Full,
            school: crate::store::schools::Scope::Trust,
            grants: 1,
        };
        let out = page(HOSTILE, Some(&viewer), html! { p { (HOSTILE) } });
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(
            out.contains(&format!("<title>{ESCAPED} - Tutela</title>")),
            "{out}"
        );
        assert!(
            out.contains(&format!(r#"<span class="who">{ESCAPED} (dsl)</span>"#)),
            "{out}"
        );
        assert!(
            out.contains(&format!(r#"value="tok&quot;{ESCAPED}""#)),
            "{out}"
        );
        assert!(
            out.contains(&format!("<main><p>{ESCAPED}</p></main>")),
            "{out}"
        );
        assert!(out.contains(r#"<a href="/settings">Settings</a>"#), "{out}");
    }

    #[test]
    fn select_escapes_options_and_marks_the_current_one() {
        let out = select("state", &[("a\"b", HOSTILE), ("new", "New")], "new").into_string();
        assert_eq!(
            out,
            format!(
                r#"<select name="state"><option value="a&quot;b">{ESCAPED}</option><option value="new" selected>New</option></select>"#
            )
        );
    }
}
