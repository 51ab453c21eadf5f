import type { ConnectRouter } from "@connectrpc/connect";
import { DomainError } from "../core/errors.ts";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/pb/grpc/health/v1/health_pb.ts";
import type { Readiness, ReadyState } from "./readiness.ts";

/**
 * `grpc.health.v1.Health` (github.com/grpc/grpc/blob/master/doc/health-checking.md) over every
 * protocol. The overall status (service "") and each served service's status are the replica's
 * readiness, the same answer as `GET /readyz`: SERVING while the database answers and the
 * process is not draining, NOT_SERVING otherwise.
 */
export function registerHealthService(deps: { readiness: Readiness; services: readonly string[] }) {
  const known = new Set(["", ...deps.services]);
  return (router: ConnectRouter) => {
    router.service(Health, {
      async check(req) {
        if (!known.has(req.service))
          throw new DomainError("not_found", `no service named ${JSON.stringify(req.service)} is served here`);
        return { status: statusOf(await deps.readiness.check()) };
      },
      async list() {
        const status = statusOf(await deps.readiness.check());
        return { statuses: Object.fromEntries([...known].map((name) => [name, { status }])) };
      },
      // An unknown service gets SERVICE_UNKNOWN and the call stays open, as the protocol asks.
      // The stream ends when the client goes away or the server closes (clients then retry).
      async *watch(req, context) {
        let sent: ServingStatus | undefined;
        for await (const state of deps.readiness.watch(context.signal)) {
          const status = known.has(req.service) ? statusOf(state) : ServingStatus.SERVICE_UNKNOWN;
          if (status === sent) continue;
          sent = status;
          yield { status };
        }
      },
    });
  };
}

function statusOf(state: ReadyState): ServingStatus {
  return state === "ready" ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
}
