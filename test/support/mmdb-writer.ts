/**
 * A minimal MaxMind DB writer (format 2.0, https://maxmind.github.io/MaxMind-DB/), so GeoIP tests
 * build their own small `.mmdb` with exactly the networks and places they need: no database is
 * downloaded and none is shipped. npm has no maintained writer; the format is small: a binary
 * search tree over address bits, a 16-byte separator, a data section, then the metadata map.
 *
 * Supports what the tests need: an IPv6 tree (IPv4 networks live under ::/96, as MaxMind's own
 * databases store them), 24-bit records, and values of strings, non-negative integers (uint32),
 * other numbers (double), arrays and maps. Networks must not overlap.
 */
import { isIP } from "node:net";

export type MmdbValue = string | number | MmdbValue[] | { [key: string]: MmdbValue };

interface TreeNode {
  children: [TreeNode | Leaf | null, TreeNode | Leaf | null];
}
interface Leaf {
  data: number;
}

export function buildMmdb(
  networks: ReadonlyArray<{ network: string; data: MmdbValue }>,
  options: { databaseType?: string } = {},
): Buffer {
  const dataChunks: Buffer[] = [];
  let dataSize = 0;
  const root: TreeNode = { children: [null, null] };

  for (const { network, data } of networks) {
    const bits = prefixBits(network);
    const encoded = encode(data);
    const leaf: Leaf = { data: dataSize };
    dataChunks.push(encoded);
    dataSize += encoded.length;
    let node = root;
    for (let i = 0; i < bits.length - 1; i++) {
      const bit = bits[i] as 0 | 1;
      let next = node.children[bit];
      if (next === null) {
        next = { children: [null, null] };
        node.children[bit] = next;
      }
      if ("data" in next) throw new Error(`${network} overlaps an earlier network`);
      node = next;
    }
    const last = bits[bits.length - 1] as 0 | 1;
    if (node.children[last] !== null) throw new Error(`${network} overlaps an earlier network`);
    node.children[last] = leaf;
  }

  // Number the nodes breadth-first; node 0 is the root.
  const order: TreeNode[] = [root];
  const index = new Map<TreeNode, number>([[root, 0]]);
  for (let i = 0; i < order.length; i++) {
    for (const child of order[i]!.children) {
      if (child !== null && !("data" in child)) {
        index.set(child, order.length);
        order.push(child);
      }
    }
  }
  const nodeCount = order.length;
  const tree = Buffer.alloc(nodeCount * 6);
  order.forEach((node, i) => {
    node.children.forEach((child, side) => {
      const record = child === null ? nodeCount : "data" in child ? nodeCount + 16 + child.data : index.get(child)!;
      tree.writeUIntBE(record, i * 6 + side * 3, 3);
    });
  });

  const metadata = encode({
    node_count: nodeCount,
    record_size: 24,
    ip_version: 6,
    database_type: options.databaseType ?? "Test-City",
    languages: ["en"],
    binary_format_major_version: 2,
    binary_format_minor_version: 0,
    build_epoch: 1_700_000_000,
    description: { en: "test database" },
  });
  return Buffer.concat([
    tree,
    Buffer.alloc(16),
    ...dataChunks,
    Buffer.from("abcdef4d61784d696e642e636f6d", "hex"),
    metadata,
  ]);
}

/** The network's prefix as bits of a 128-bit address (IPv4 under ::/96). */
function prefixBits(network: string): number[] {
  const [address, lengthText] = network.split("/");
  const version = isIP(address ?? "");
  if (version === 0) throw new Error(`not an address: ${network}`);
  const bytes =
    version === 4 ? [...Array<number>(12).fill(0), ...address!.split(".").map(Number)] : ipv6Bytes(address!);
  const length = (version === 4 ? 96 : 0) + Number(lengthText ?? (version === 4 ? 32 : 128));
  const bits: number[] = [];
  for (let i = 0; i < length; i++) bits.push((bytes[i >> 3]! >> (7 - (i & 7))) & 1);
  return bits;
}

function ipv6Bytes(address: string): number[] {
  const [head, tail] = address.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

function control(type: number, size: number): Buffer {
  const extended = type > 7;
  const head = (extended ? 0 : type) << 5;
  const ext = extended ? [type - 7] : [];
  if (size < 29) return Buffer.from([head | size, ...ext]);
  if (size < 29 + 256) return Buffer.from([head | 29, ...ext, size - 29]);
  if (size < 285 + 65_536) return Buffer.from([head | 30, ...ext, (size - 285) >> 8, (size - 285) & 0xff]);
  const rest = size - 65_821;
  return Buffer.from([head | 31, ...ext, rest >> 16, (rest >> 8) & 0xff, rest & 0xff]);
}

function encode(value: MmdbValue): Buffer {
  if (typeof value === "string") {
    const bytes = Buffer.from(value, "utf8");
    return Buffer.concat([control(2, bytes.length), bytes]);
  }
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
      const bytes: number[] = [];
      for (let v = value; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
      return Buffer.concat([control(6, bytes.length), Buffer.from(bytes)]);
    }
    const double = Buffer.alloc(8);
    double.writeDoubleBE(value);
    return Buffer.concat([control(3, 8), double]);
  }
  if (Array.isArray(value)) return Buffer.concat([control(11, value.length), ...value.map(encode)]);
  const entries = Object.entries(value);
  return Buffer.concat([control(7, entries.length), ...entries.flatMap(([k, v]) => [encode(k), encode(v)])]);
}

/** A GeoLite2-City-shaped record. */
export function cityRecord(country: string, latitude: number, longitude: number): MmdbValue {
  return { country: { iso_code: country }, location: { latitude, longitude, accuracy_radius: 50 } };
}
