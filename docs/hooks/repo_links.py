"""Links from a docs page to a repository file outside docs/, such as ``[BENCHMARKS.md](../BENCHMARKS.md)``.

They are right where the Markdown is read in the repository. In the built site there is no such page, so
they point to the file under ``repo_url`` (branch ``main``) when mkdocs.yml names one, and become their
plain link text otherwise; either way ``mkdocs build --strict`` checks every link between pages.
"""

import re

OUTSIDE_DOCS = re.compile(r"\[([^\]]+)\]\(\.\./([^)#\s]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    repo = (config.get("repo_url") or "").rstrip("/")

    def rewrite(link: re.Match) -> str:
        text, path, anchor = link.group(1), link.group(2), link.group(3) or ""
        return f"[{text}]({repo}/blob/main/{path}{anchor})" if repo else text

    return OUTSIDE_DOCS.sub(rewrite, markdown)
