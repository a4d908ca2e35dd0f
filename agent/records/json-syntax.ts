// Where a JSON text stops being JSON. JSON.parse says why but, for most errors in Node
// 20, not where ("Unexpected token '}', ..."x": [}]" is not valid JSON"); this scanner,
// run only after JSON.parse failed, walks the grammar (RFC 8259) and names the offset.

export interface JsonSyntaxError {
  /** Character offset of the first character that cannot continue the document. */
  offset: number;
  reason: string;
  /** The text ended before the document did. */
  ended: boolean;
}

class Stop extends Error {
  constructor(readonly at: number, readonly reason: string, readonly ended: boolean) {
    super(reason);
  }
}

/** The first syntax error of `text`, or null when it is one JSON value. */
export function firstJsonError(text: string): JsonSyntaxError | null {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
  };
  const fail = (reason: string): never => {
    throw new Stop(i, i >= n ? 'the text ends' : reason, i >= n);
  };
  const char = () => (i < n ? JSON.stringify(text[i]) : 'the end');
  const literal = (word: string) => {
    for (const c of word) {
      if (text[i] !== c) fail(`${char()} in a literal (expected ${word})`);
      i++;
    }
  };
  const string = () => {
    i++; // the opening quote
    for (;;) {
      if (i >= n) fail('');
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) fail(`a control character ${JSON.stringify(text[i])} inside a string`);
      if (c === 0x5c) {
        i++;
        if (i < n && text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('a \\u escape without four hex digits');
          i += 4;
        } else if (i >= n || !'"\\/bfnrt'.includes(text[i]!)) fail(`an unknown escape \\${text[i] ?? ''}`);
      }
      i++;
    }
    i++;
  };
  const number = () => {
    const m = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    m.lastIndex = i;
    if (!m.exec(text) || m.lastIndex === i) fail(`${char()} where a value was expected`);
    i = m.lastIndex;
  };
  const value = (): void => {
    ws();
    if (i >= n) fail('');
    const c = text[i];
    if (c === '{') return container('}', true);
    if (c === '[') return container(']', false);
    if (c === '"') return string();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    return number();
  };
  const container = (close: string, object: boolean): void => {
    i++;
    ws();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      if (object) {
        ws();
        if (text[i] !== '"') fail(`${char()} where a property name in double quotes was expected`);
        string();
        ws();
        if (text[i] !== ':') fail(`${char()} where ':' was expected after a property name`);
        i++;
      }
      value();
      ws();
      if (text[i] === ',') {
        i++;
        continue;
      }
      if (text[i] === close) {
        i++;
        return;
      }
      fail(`${char()} where ',' or '${close}' was expected`);
    }
  };
  try {
    value();
    ws();
    if (i < n) fail(`${char()} after the end of the document`);
    return null;
  } catch (e) {
    if (e instanceof RangeError) return { offset: i, reason: 'the document nests too deeply', ended: false };
    if (!(e instanceof Stop)) throw e;
    return { offset: e.at, reason: e.reason, ended: e.ended };
  }
}
