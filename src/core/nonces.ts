import { type AddressLimit, limitKeyOf, UNLIMITED } from "./address-limit.ts";
import type { Clock } from "./clock.ts";
import { DomainError } from "./errors.ts";
import type { ClientInfo } from "./model.ts";
import type { NonceSealer, SingleUse } from "./ports/single-use.ts";
import { singleUse } from "./single-use.ts";

export interface IssuedNonce {
  nonce: string;
  /** Hex SHA-256 of the nonce, for providers whose tokens carry the hash. */
  sha256: string;
  expiresIn: number;
}

/**
 * Server-issued nonces (providers with `require_nonce: server`): random, bound to the caller's
 * device, short-lived, single use. Issuing writes nothing (the nonce is sealed with an HMAC, so
 * handing out nonces is no write amplifier); a sign-in spends one by writing its marker in the
 * sign-in's own transaction, so it is used once across every replica.
 */
export interface NonceService {
  issue(client: ClientInfo): Promise<IssuedNonce>;
  /** The marker that spends `nonce`, when it is ours, for this device and unexpired. */
  check(nonce: string, client: ClientInfo, now: Date): SingleUse;
}

export function createNonceService(deps: {
  clock: Clock;
  sealer: NonceSealer;
  /** Hex SHA-256, for the marker's key (the nonce itself is not stored). */
  sha256: (text: string) => string;
  ttlSeconds: number;
  addressLimit?: AddressLimit | undefined;
}): NonceService {
  return {
    async issue(client) {
      const attempt = await (deps.addressLimit?.admit(limitKeyOf(client), "CreateNonce") ?? UNLIMITED);
      if (client.deviceId === null) {
        throw await attempt.fail(
          new DomainError("invalid_request", "device_id is required: a nonce is bound to the device that will sign in"),
          { recorded: false },
        );
      }
      attempt.settle();
      const expiresAt = new Date(deps.clock.now().getTime() + deps.ttlSeconds * 1000);
      const nonce = deps.sealer.seal(client.deviceId, expiresAt);
      return { nonce, sha256: deps.sha256(nonce), expiresIn: deps.ttlSeconds };
    },
    check(nonce, client, now) {
      const expiresAt = client.deviceId === null ? null : deps.sealer.open(nonce, client.deviceId);
      if (expiresAt === null || expiresAt <= now) {
        throw new DomainError(
          "nonce_invalid",
          "the nonce was not issued by this service to this device, or it has expired; get a new nonce and sign in again",
        );
      }
      return singleUse(expiresAt, `nonce:${deps.sha256(nonce)}`);
    },
  };
}
