/**
 * Text that names or describes something (e-mail, phone, names, ids, reasons) must be plain:
 * no control characters. PostgreSQL cannot store NUL in text at all (the write fails and takes
 * the audit row with it), and the other controls (line breaks, escape sequences, C1 codes) forge
 * log lines and terminal output wherever the value is shown later. Identifiers and values a
 * caller or an identity provider asserts are refused, never stripped: a stored value must be
 * exactly what was asserted, and two different inputs must never collapse into one stored value.
 * Only descriptive headers nobody is refused over are neutralised (withoutControlCharacters).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// eslint-disable-next-line no-control-regex -- as above
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;

/** Whether `text` holds a control character (Unicode category Cc: C0, DEL, C1). */
export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text);
}

/**
 * Descriptive text nobody is refused over (a User-Agent header: HTTP lets tabs, DEL and
 * Latin-1 C1 codes through) is kept with each control character shown as U+FFFD, so that what is
 * stored and shown later (sessions list, audit trail, admin tool) holds none.
 */
export function withoutControlCharacters(text: string): string {
  return CONTROL.test(text) ? text.replace(CONTROLS, "\ufffd") : text;
}
