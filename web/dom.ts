/** Small DOM helpers: elements by id, definition lists, times and durations people can read. */

/** The element with `id`, of the type the page's HTML gives it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the page has no #${id}`);
  return el as T;
}

/** A new element with text content and attributes (never HTML: every value is text). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  text?: string | null,
  attributes: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
  return e;
}

/** Fills a <dl> with term/value pairs; a value may be an element (a badge, a <code>). */
export function fillPairs(dl: HTMLElement, pairs: ReadonlyArray<readonly [string, string | Node]>): void {
  dl.replaceChildren(
    ...pairs.flatMap(([term, value]) => {
      const dd = el("dd");
      dd.append(value);
      return [el("dt", term), dd];
    }),
  );
}

export function show(id: string, visible: boolean): void {
  byId(id).hidden = !visible;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const shortDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/**
 * An RFC 3339 string or a Date as local time, inside a <time> with the exact value: `full` date
 * and time, `time` of day only, or `short`: the time of day when it is today, else a short date.
 */
export function timeEl(value: string | Date, style: "full" | "time" | "short" = "full"): HTMLTimeElement {
  const date = typeof value === "string" ? new Date(value) : value;
  if (Number.isNaN(date.getTime())) return el("time", String(value));
  const today = date.toDateString() === new Date().toDateString();
  const format = style === "full" ? dateTime : style === "time" || today ? timeOnly : shortDateTime;
  return el("time", format.format(date), { datetime: date.toISOString(), title: dateTime.format(date) });
}

/** 1799 -> "29:59", 3700 -> "1:01:40"; never negative. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

/** A long token as its first and last characters, enough to tell two apart. */
export function abbreviate(token: string, keep = 8): string {
  return token.length <= keep * 2 + 1 ? token : `${token.slice(0, keep)}…${token.slice(-keep)}`;
}

export function code(text: string): HTMLElement {
  return el("code", text);
}
