/** The README's runnable blocks, as the README tests read them (fenced `sh` blocks, verbatim). */

/** The sh blocks after each `<!-- walk -->` marker, in document order. */
export function walkBlocks(markdown: string): string[] {
  const blocks: string[] = [];
  const re = /^<!-- walk -->\n```sh\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) blocks.push(m[1]!);
  return blocks;
}

/** The body of the section under `heading` (up to the next heading of the same or a higher level). */
export function section(markdown: string, heading: string): string {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) throw new Error(`README has no section ${heading}`);
  const level = /^#+/.exec(heading)![0].length;
  let fenced = false;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    if (lines[i]!.startsWith('```')) fenced = !fenced;
    // A shell comment inside a fenced block is not a heading.
    else if (!fenced && /^#+ /.test(lines[i]!) && /^#+/.exec(lines[i]!)![0].length <= level) {
      end = i;
      break;
    }
  }
  return lines.slice(start + 1, end).join('\n');
}

/** Every fenced sh block of a piece of markdown, in order. */
export function shBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

const STEP4 = /^# 4\. /m;

/** The five-minute tour's sh blocks, the lab block cut at step 4 (the operator's step in /ui, which the test does by API). */
export function tourScript(readme: string): { blocks: string[]; beforeStep4: string; afterStep4: string } {
  const blocks = shBlocks(section(readme, '### Five-minute tour'));
  const lab = blocks.at(-1)!;
  const at = lab.search(STEP4);
  if (at < 0) throw new Error('the tour lab block has no "# 4." step');
  return { blocks: blocks.slice(0, -1), beforeStep4: lab.slice(0, at), afterStep4: lab.slice(at) };
}
