import { DomainError } from "../../src/core/errors.ts";

/**
 * The stable code a call was refused with, or "ok" when it succeeded; anything thrown that is not
 * a DomainError is thrown on, so a test asserting a code never passes on an unrelated failure.
 */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    if (e instanceof DomainError) return e.code;
    throw e;
  }
}

/** An HTTP answer's status and the stable `code` of its JSON body (undefined when it has none). */
export async function statusAndCode(res: Response): Promise<{ status: number; code: string | undefined }> {
  return { status: res.status, code: ((await res.json()) as { code?: string }).code };
}
