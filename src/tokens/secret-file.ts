import { closeSync, fsyncSync, linkSync, openSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname } from "node:path";

/**
 * Writes a new secret file whole or not at all (mode 0600): into a temporary file, flushed to disk,
 * then linked into place, which fails rather than overwrite a file another process created first
 * (then that one is used). A full disk leaves no empty file behind to block the next start.
 */
export function writeSecretFile(file: string, content: string): void {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fd = openSync(temp, "wx", 0o600);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const dir = openSync(dirname(file), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } finally {
    rmSync(temp, { force: true });
  }
}
