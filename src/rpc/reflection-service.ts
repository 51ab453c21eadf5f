import {
  create,
  createRegistry,
  type DescFile,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
} from "../../gen/pb/grpc/reflection/v1/reflection_pb.ts";
import {
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionRequestSchema as RequestV1alphaSchema,
  ServerReflectionResponseSchema as ResponseV1alphaSchema,
} from "../../gen/pb/grpc/reflection/v1alpha/reflection_pb.ts";

type Answer = MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];

/**
 * gRPC server reflection (github.com/grpc/grpc/blob/master/doc/server-reflection.md), v1 and the
 * v1alpha that older tools (grpcurl before 1.9, Postman) still ask for, so clients can list the
 * services and fetch their schema without a copy of `proto/`. Everything is answered from the
 * file descriptors compiled into the generated code: the served services' files and everything
 * they import (google.api annotations, descriptor.proto), and `files` besides (google.rpc's
 * error details, which every error carries in its trailers or body).
 *
 * A file is sent with the files it imports, each file at most once per stream (the client keeps
 * what it was given), as grpc-go does.
 */
export function registerReflectionService(deps: { services: readonly DescService[]; files?: readonly DescFile[] }) {
  const services = [...deps.services, ServerReflection, ServerReflectionV1alpha];
  const files = new Map<string, DescFile>();
  const collect = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    file.dependencies.forEach(collect);
  };
  services.forEach((s) => collect(s.file));
  deps.files?.forEach(collect);
  const registry = createRegistry(...files.values());
  const encoded = new Map<string, Uint8Array>();
  const bytesOf = (file: DescFile) => {
    let bytes = encoded.get(file.proto.name);
    if (bytes === undefined) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      encoded.set(file.proto.name, bytes);
    }
    return bytes;
  };

  /** The file and the files it imports (transitively) that this stream has not been sent yet. */
  function withImports(file: DescFile, sent: Set<string>): Answer {
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (sent.has(f.proto.name)) return;
      sent.add(f.proto.name);
      out.push(bytesOf(f));
      f.dependencies.forEach(visit);
    };
    // The asked-for file always comes back (first), even if this stream had it before.
    sent.delete(file.proto.name);
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
  }

  /** The file declaring a type, service, extension, or a method / field / enum value of one. */
  function fileOfSymbol(symbol: string): DescFile | undefined {
    const desc = registry.get(symbol);
    if (desc !== undefined) return desc.file;
    const dot = symbol.lastIndexOf(".");
    const parent = dot < 0 ? undefined : registry.get(symbol.slice(0, dot));
    const member = symbol.slice(dot + 1);
    switch (parent?.kind) {
      case "service":
        return parent.methods.some((m) => m.name === member) ? parent.file : undefined;
      case "message":
        return parent.fields.some((f) => f.name === member) || parent.oneofs.some((o) => o.name === member)
          ? parent.file
          : undefined;
      case "enum":
        return parent.values.some((v) => v.name === member) ? parent.file : undefined;
      default:
        return undefined;
    }
  }

  function answer(request: ServerReflectionRequest, sent: Set<string>): Answer {
    const notFound = (what: string): Answer => ({
      case: "errorResponse",
      value: { errorCode: Code.NotFound, errorMessage: `${what} not found` },
    });
    const r = request.messageRequest;
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: services.map((s) => ({ name: s.typeName })) } };
      case "fileByFilename": {
        const file = files.get(r.value);
        return file === undefined ? notFound(`file ${r.value}`) : withImports(file, sent);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(r.value);
        return file === undefined ? notFound(`symbol ${r.value}`) : withImports(file, sent);
      }
      case "fileContainingExtension": {
        const message = registry.getMessage(r.value.containingType);
        const extension =
          message === undefined ? undefined : registry.getExtensionFor(message, r.value.extensionNumber);
        return extension === undefined
          ? notFound(`extension ${r.value.extensionNumber} of ${r.value.containingType}`)
          : withImports(extension.file, sent);
      }
      case "allExtensionNumbersOfType": {
        if (registry.getMessage(r.value) === undefined) return notFound(`type ${r.value}`);
        const numbers: number[] = [];
        for (const desc of registry) {
          if (desc.kind === "extension" && desc.extendee.typeName === r.value) numbers.push(desc.number);
        }
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: r.value, extensionNumber: numbers.sort((a, b) => a - b) },
        };
      }
      default:
        return {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "the request asks for nothing" },
        };
    }
  }

  async function* serve(requests: AsyncIterable<ServerReflectionRequest>) {
    const sent = new Set<string>();
    for await (const request of requests) {
      yield create(ServerReflectionResponseSchema, {
        validHost: request.host,
        originalRequest: request,
        messageResponse: answer(request, sent),
      });
    }
  }

  return (router: ConnectRouter) => {
    router.service(ServerReflection, { serverReflectionInfo: serve });
    // v1alpha has the same messages, field for field, in another package: the wire bytes carry over.
    router.service(ServerReflectionV1alpha, {
      async *serverReflectionInfo(requests) {
        async function* asV1() {
          for await (const request of requests)
            yield fromBinary(ServerReflectionRequestSchema, toBinary(RequestV1alphaSchema, request));
        }
        for await (const response of serve(asV1()))
          yield fromBinary(ResponseV1alphaSchema, toBinary(ServerReflectionResponseSchema, response));
      },
    });
  };
}
