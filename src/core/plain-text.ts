/**
 * Text that names or describes something (e-mail, phone, names, ids, reasons) must be plain:
 * no control characters. PostgreSQL cannot store NUL in text at all (the write fails and takes
 * the audit row with it), and the other controls (line breaks, escape sequences, C1 codes) forge
 * log lines and terminal output wherever the value is shown later. They are refused, never
 * stripped: a stored value must be exactly what the caller or the identity provider asserted,
 * and two different inputs must never collapse into one stored value.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Whether `text` holds a control character (Unicode category Cc: C0, DEL, C1). */
export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text);
}
