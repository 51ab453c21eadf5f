import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "../..");

/**
 * The fenced block after `<!-- snippet: NAME … -->` in a markdown file of this repository
 * (path relative to its root), so a test runs documentation exactly as written.
 */
export function markdownSnippet(file: string, name: string): string {
  const text = readFileSync(join(repo, file), "utf8");
  const m = new RegExp(`<!-- snippet: ${name}[ >][^>]*>?\\n\`\`\`\\w+\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(text);
  if (m === null) throw new Error(`${file} has no snippet ${name}`);
  return m[1]!;
}

/** A shell snippet's commands, one per entry: `\`-continued lines joined, blank lines and comments dropped. */
export function shellCommands(snippet: string): string[] {
  return snippet
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}
