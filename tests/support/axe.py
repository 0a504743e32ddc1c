"""axe-core in the browser tests: ``await assert_no_serious(page, "state")`` audits what the page
shows now and fails on any serious or critical violation, naming the rule, the nodes and the fix.

axe-core is the npm package pinned in tests/js/package.json (``scripts/test-deps`` installs it;
nothing is fetched while the tests run). The audit runs axe's default rules (WCAG 2.x A and AA, best
practices) and its experimental ones (``label-content-name-mismatch``, WCAG 2.5.3, is experimental in
axe 4.14), not the AAA ones (enhanced contrast) axe leaves off. axe is injected with CDP's evaluate,
which the page's Content-Security-Policy does not govern.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from playwright.async_api import Page

from tests.support import ROOT

AXE_JS = ROOT / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")

RUN = """async ([selector, exclude]) => {
  const rules = {} // axe's default set (WCAG 2.x A and AA, best practices) and its experimental rules
  for (const r of axe.getRules(['experimental'])) if (!r.tags.includes('wcag2aaa')) rules[r.ruleId] = { enabled: true }
  const context = exclude.length ? { include: [selector], exclude: exclude.map((s) => [s]) } : selector
  const result = await axe.run(context, { rules, resultTypes: ['violations'] })
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: n.target.join(' '), impact: n.impact, html: n.html.slice(0, 200),
                                 summary: n.failureSummary }))
  }))
}"""


@cache
def axe_source() -> str:
    if not AXE_JS.exists():
        raise FileNotFoundError(f"{AXE_JS} is missing: run scripts/test-deps (npm ci in tests/js)")
    return AXE_JS.read_text()


async def inject(page: Page) -> None:
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        # a string that is not a function is evaluated as a script in the page's main world
        await page.evaluate(axe_source() + "\n;void 0")


async def audit(page: Page, *, include: str = "html", exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every violation axe finds on the page as it is now (all impacts)."""
    await inject(page)
    violations: list[dict[str, Any]] = await page.evaluate(RUN, [include, list(exclude)])
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for n in v["nodes"][:8]:
            lines.append(f"    {n['target']}: {n['html']}")
            lines.append("      " + str(n["summary"]).replace("\n", "\n      "))
    return "\n".join(lines)


async def assert_no_serious(page: Page, state: str = "", *, include: str = "html",
                            exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Fail when axe finds a serious or critical violation; returns the lesser ones (for reports)."""
    violations = await audit(page, include=include, exclude=exclude)
    serious = [v for v in violations if v["impact"] in SERIOUS]
    assert not serious, f"axe: {len(serious)} serious/critical on {state or page.url}:\n{describe(serious)}"
    return violations
