"""Check every internal link and image of the built site: the file exists, and so does
the anchor. ``python docs/check_links.py docs/_build/html``; exit 1 listing the broken
ones. (External links are not followed: the build machines have no network.)"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path


def broken_links(site: Path) -> tuple[int, list[tuple[str, str]]]:
    """``(links checked, [(page, href), ...] broken)`` for the HTML pages under ``site``."""
    pages = sorted(site.rglob("*.html"))
    ids = {p.resolve(): set(re.findall(r'id="([^"]+)"', p.read_text(errors="ignore")))
           for p in pages}
    bad: list[tuple[str, str]] = []
    checked = 0
    for page in pages:
        for href in re.findall(r'(?:href|src)="([^"]+)"', page.read_text(errors="ignore")):
            href = html.unescape(href)
            if href.startswith(("http://", "https://", "mailto:", "data:")):
                continue
            checked += 1
            path, _, anchor = href.partition("#")
            path = path.split("?", 1)[0]
            target = (page.parent / path).resolve() if path else page.resolve()
            if not target.exists() or (anchor and target.suffix == ".html"
                                       and anchor not in ids.get(target, set())):
                bad.append((str(page.relative_to(site)), href))
    return checked, bad


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html")
    if not (site / "index.html").is_file():
        print(f"error: {site}: no index.html (build the site first)", file=sys.stderr)
        return 2
    checked, bad = broken_links(site)
    for page, href in bad:
        print(f"{page}: broken link {href}")
    print(f"{checked} internal links and images checked, {len(bad)} broken")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
