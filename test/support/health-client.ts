import * as grpc from "@grpc/grpc-js";
import healthCheck from "grpc-health-check";
import { grpcTarget } from "./signin-e2e.ts";

/** Serving statuses as grpc-health-check's client gives them (enum names). */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

type CheckCallback = (error: grpc.ServiceError | null, response?: { status: ServingStatus }) => void;
interface HealthClient extends grpc.Client {
  check(
    request: { service: string },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: CheckCallback,
  ): grpc.ClientUnaryCall;
  watch(request: { service: string }): grpc.ClientReadableStream<{ status: ServingStatus }>;
}

const HealthClientConstructor = grpc.makeClientConstructor(
  healthCheck.service as unknown as grpc.ServiceDefinition,
  "grpc.health.v1.Health",
) as unknown as new (target: string, credentials: grpc.ChannelCredentials) => HealthClient;

/**
 * A gRPC health client as operators' tools build it: @grpc/grpc-js with the service definition
 * that the `grpc-health-check` package loads from its own copy of health.proto.
 */
export function createHealthClient(url: string) {
  const client = new HealthClientConstructor(grpcTarget(url), grpc.credentials.createInsecure());
  return {
    /** Check; with `deadlineMs` the call carries grpc-timeout (then connect-es serves it, not the fast path). */
    check(service: string, deadlineMs?: number): Promise<{ status: ServingStatus } | { error: grpc.ServiceError }> {
      const options: grpc.CallOptions = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
      return new Promise((resolve) => {
        client.check({ service }, new grpc.Metadata(), options, (error, response) =>
          resolve(error !== null ? { error } : { status: response!.status }),
        );
      });
    },
    /** Opens a Watch; `next()` resolves with the next status sent, `ended` with the call's final status. */
    watch(service: string) {
      const call = client.watch({ service });
      const received: ServingStatus[] = [];
      const waiting: ((status: ServingStatus) => void)[] = [];
      call.on("data", (m: { status: ServingStatus }) => {
        const w = waiting.shift();
        if (w !== undefined) w(m.status);
        else received.push(m.status);
      });
      const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      call.on("error", () => undefined); // The status event reports it.
      return {
        next: (): Promise<ServingStatus> => {
          const queued = received.shift();
          return queued !== undefined ? Promise.resolve(queued) : new Promise((resolve) => waiting.push(resolve));
        },
        /** Statuses received but not yet taken by next(). */
        pending: () => [...received],
        ended,
        cancel: () => call.cancel(),
      };
    },
    close: () => client.close(),
  };
}
