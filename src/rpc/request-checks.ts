/**
 * Checks every RPC's request passes before any handler, credential check included, sees it, on
 * every protocol and both server paths:
 *
 * - a body that is not a message of the method's input type (bad protobuf, bad JSON, broken
 *   gRPC framing) is `invalid_request` with our own words; the parser's text goes to no client;
 * - text fields holding control characters are `invalid_characters` (see core/plain-text.ts).
 *
 * Both are refusals inside the interceptor chain, so the metrics interceptor counts them by their
 * code and the error interceptor logs and shapes them like any other.
 */
import { kAccess } from "./context.ts";
import { create, type DescField, type DescMessage, type Message, ScalarType } from "@bufbuild/protobuf";
import { type ContextValues, createContextKey, type Interceptor } from "@connectrpc/connect";
import { DomainError } from "../core/errors.ts";
import { hasControlCharacters } from "../core/plain-text.ts";

/**
 * Set by whoever decoded the request (REST, the unary fast path, the screening in front of
 * connect-es) when the body was not a message: the call then runs the interceptors with an empty
 * message, and the first check below refuses it.
 */
export const kMalformed = createContextKey<DomainError | null>(null, { description: "malformed request" });

/** The refusal of a body that does not decode; `cause` (parser detail) is for the log only. */
export function malformedRequest(type: DescMessage, cause: unknown): DomainError {
  return new DomainError("invalid_request", `the request body is not a valid ${type.typeName} message`, { cause });
}

/**
 * The decoded input message; when decoding fails, an empty one, with the call marked malformed
 * so that the interceptors refuse it (counted, logged and answered like every refusal).
 */
export function decodeOrMark<T extends Message>(
  type: DescMessage,
  context: { values: ContextValues },
  decode: () => T,
): T {
  try {
    return decode();
  } catch (e) {
    context.values.set(kMalformed, malformedRequest(type, e));
    return create(type) as T;
  }
}

/**
 * Credentials are exempt: they are never stored as text (only hashed or parsed) and each has its
 * own verifier and refusal code (`id_token_malformed`, `mfa_code_invalid`, …), audited where the
 * flow audits; a control character in one is just a wrong credential.
 */
const CREDENTIAL_FIELDS = new Set([
  "id_token",
  "refresh_token",
  "challenge_token",
  "code",
  "current_password",
  "new_password",
]);

type TextField =
  { field: DescField; kind: "text" | "list" } | { field: DescField; kind: "message"; fields: TextField[] };

const plans = new WeakMap<DescMessage, TextField[]>();

/** The text fields of a message type (nested messages included), worked out once per type. */
function planOf(desc: DescMessage, depth = 0): TextField[] {
  const known = plans.get(desc);
  if (known !== undefined) return known;
  const plan: TextField[] = [];
  for (const field of desc.fields) {
    if (CREDENTIAL_FIELDS.has(field.name)) continue;
    if (field.fieldKind === "scalar" && field.scalar === ScalarType.STRING) plan.push({ field, kind: "text" });
    else if (field.fieldKind === "list" && field.listKind === "scalar" && field.scalar === ScalarType.STRING)
      plan.push({ field, kind: "list" });
    else if (field.fieldKind === "message" && depth < 8)
      plan.push({ field, kind: "message", fields: planOf(field.message, depth + 1) });
  }
  plans.set(desc, plan);
  return plan;
}

/** The first text field (by proto name) of `message` that holds a control character, if any. */
function fieldWithControlCharacters(message: Message, plan: readonly TextField[]): string | null {
  const values = message as unknown as Record<string, unknown>;
  for (const entry of plan) {
    const value = values[entry.field.localName];
    if (entry.kind === "text") {
      if (typeof value === "string" && hasControlCharacters(value)) return entry.field.name;
    } else if (entry.kind === "list") {
      if (Array.isArray(value) && value.some((v) => typeof v === "string" && hasControlCharacters(v)))
        return entry.field.name;
    } else if (entry.kind === "message" && value !== undefined && value !== null && entry.fields.length > 0) {
      const inner = fieldWithControlCharacters(value as Message, entry.fields);
      if (inner !== null) return `${entry.field.name}.${inner}`;
    }
  }
  return null;
}

/** Place inside the error interceptor (so refusals are counted and logged) and before auth. */
export function requestChecksInterceptor(): Interceptor {
  return (next) => async (req) => {
    const malformed = req.contextValues.get(kMalformed);
    if (malformed !== null) {
      const access = req.contextValues.get(kAccess);
      if (access !== null) access.malformed = true;
      throw malformed;
    }
    if (!req.stream) {
      const field = fieldWithControlCharacters(req.message, planOf(req.method.input));
      if (field !== null) {
        throw new DomainError("invalid_characters", `${field} must not contain control characters`, {
          detail: { field },
        });
      }
    }
    return next(req);
  };
}
