"""Writes the throwaway workspace of rules/perf/against-filed.sh: the matcher as filed and
the current one as two renamed crates beside the comparison binary, with the repository's
workspace settings (dependency versions, release profile)."""
import re
import sys

root, work = sys.argv[1], sys.argv[2]
top = open(f"{root}/Cargo.toml").read()
deps = re.search(r"\[workspace\.dependencies\]\n(.*?)(?=\n\[)", top, re.S).group(1)
package = re.search(r"\[workspace\.package\]\n(.*?)(?=\n\[)", top, re.S).group(1)
deps = "\n".join(l for l in deps.splitlines() if "path =" not in l)
with open(f"{work}/Cargo.toml", "w") as f:
    f.write('[workspace]\nmembers = ["filed", "now", "cmp"]\nresolver = "2"\n\n')
    f.write(f"[workspace.package]\n{package}\n\n[workspace.dependencies]\n{deps}\n\n")
    f.write('[workspace.lints.rust]\n\n[profile.release]\ndebug = "line-tables-only"\n')
for crate in ("filed", "now"):
    path = f"{work}/{crate}/Cargo.toml"
    text = open(path).read()
    text = text.replace('name = "tutela-rules"\n', f'name = "tutela-rules-{crate}"\n', 1)
    text = re.sub(r"\n\[\[bin\]\].*", "\n", text, flags=re.S)
    text = re.sub(r"\n\[dev-dependencies\].*", "\n", text, flags=re.S)
    open(path, "w").write(text)
with open(f"{work}/cmp/Cargo.toml", "w") as f:
    f.write('[package]\nname = "compare"\nversion = "0.1.0"\nedition = "2021"\n\n')
    f.write("[dependencies]\n")
    f.write('filed = { package = "tutela-rules-filed", path = "../filed" }\n')
    f.write('now = { package = "tutela-rules-now", path = "../now" }\n')
