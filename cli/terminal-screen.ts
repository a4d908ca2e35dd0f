// A terminal redrawn in place: the alternate screen (the shell's lines come back on exit),
// no cursor, each frame clipped to the window and written over the last one; a resize
// redraws. restore() puts the terminal back, also from an 'exit' handler, so no way out
// leaves it without a cursor.
import type { WriteStream } from 'node:tty';

const ESC = '\x1b[';
const ENTER = `${ESC}?1049h${ESC}?25l`;
const LEAVE = `${ESC}?25h${ESC}?1049l`;

/** Cuts `line` to `width` columns (one column a code point: the view writes no wide characters). */
export function clip(line: string, width: number): string {
  const chars = [...line];
  return chars.length <= width ? line : chars.slice(0, Math.max(0, width - 1)).join('') + '…';
}

/** The frame as written: at most `rows` lines (the last saying how many did not fit), each at most `columns`. */
export function fitFrame(lines: readonly string[], columns: number, rows: number): string[] {
  const fit = lines.length <= rows ? [...lines] : [...lines.slice(0, Math.max(0, rows - 1)), `… ${lines.length - rows + 1} more lines (a taller window shows them)`];
  return fit.map((l) => clip(l, columns));
}

export class TerminalScreen {
  private active = false;
  private onResize: (() => void) | undefined;
  private readonly onExit = () => this.restore();

  constructor(private readonly out: WriteStream) {}

  /** The window's size; $COLUMNS and $LINES (else 80x24) when the output is not a terminal (--screen). */
  get columns(): number {
    return this.out.columns || Number(process.env.COLUMNS) || 80;
  }

  get rows(): number {
    return this.out.rows || Number(process.env.LINES) || 24;
  }

  enter(onResize: () => void): void {
    this.out.write(ENTER);
    this.active = true;
    this.onResize = onResize;
    this.out.on('resize', onResize);
    process.once('exit', this.onExit);
  }

  /** Draws over the last frame: home, each line then erase-to-end-of-line, then erase below. */
  draw(lines: readonly string[]): void {
    if (!this.active) return;
    const frame = fitFrame(lines, this.columns, this.rows);
    const [title, ...rest] = frame;
    const body = [`${ESC}7m${title ?? ''}${ESC}0m`, ...rest].map((l) => `${l}${ESC}K`).join('\r\n');
    this.out.write(`${ESC}H${body}${ESC}J`);
  }

  restore(): void {
    if (!this.active) return;
    this.active = false;
    if (this.onResize) this.out.off('resize', this.onResize);
    process.off('exit', this.onExit);
    this.out.write(LEAVE);
  }
}
