import type { AuditRecord } from "./model.ts";
import type { AuditLog } from "./ports/audit.ts";

/**
 * `audit.record` for refusals, which must not fail the caller: the refusal is the answer, so a
 * failed audit write is reported to `onFailure` (logged as an error) and swallowed.
 */
export function quietRecorder(
  audit: AuditLog,
  onFailure: ((error: unknown) => void) | undefined,
): (event: AuditRecord) => Promise<void> {
  return async (event) => {
    try {
      await audit.record(event);
    } catch (e) {
      onFailure?.(e);
    }
  };
}
