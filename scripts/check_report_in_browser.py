"""Look at a report as a person would: headless Chromium renders it to a PNG.

    python scripts/check_report_in_browser.py multirun/<date_time>/report.html out.png

A documented check, not a test: CI machines need not have a browser (Debian:
``apt install chromium``). It fails (exit 1) when the browser cannot render the page or
the picture is blank; look at the PNG for the rest (the conclusion first, the INCOMPLETE
banner when points are missing, coloured verdicts, legible figures).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    page, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")
    if browser is None:
        print("error: no chromium on PATH (Debian: apt install chromium)", file=sys.stderr)
        return 1
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1300,2200",
                    f"--screenshot={out}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    if img.std() < 0.01:
        print(f"error: {out}: the page rendered blank", file=sys.stderr)
        return 1
    print(f"{page} rendered to {out} ({img.shape[1]} x {img.shape[0]} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
