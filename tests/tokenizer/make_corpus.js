#!/usr/bin/env node
/*
 * make_corpus.js - writes the tokenizer test corpus, one {"text": ...}
 * JSON object per line, deterministically (no network, no input files):
 *
 *   node tests/tokenizer/make_corpus.js [OUT]    (default: stdout)
 *
 * The committed tests/fixtures/tokenizers/corpus.jsonl is this script's
 * output; regenerate the reference.jsonl files whenever it changes (see
 * tests/fixtures/tokenizers/README.md).
 *
 * Every section is hand-written content plus variations drawn from its own
 * seeded generator, so editing one section never shifts another.  The texts
 * aim at the places where tokenizer implementations disagree: pre-tokenizer
 * regexes (contractions, \p{L}/\p{N} classes, whitespace lookahead, CRLF),
 * Unicode normalization (precomposed vs decomposed, canonical reordering,
 * singletons, composition exclusions), byte-level and byte-fallback
 * encoding of every UTF-8 length, added/special token matching (exact,
 * partial, glued to words), and size extremes (empty, one character,
 * words over 1,000 characters).  Never U+0000 (the C JSON reader cannot
 * carry it) and never a lone surrogate (not valid UTF-8): both are checked.
 */
'use strict';

const fs = require('fs');

/* mulberry32: small, fast, and the same on every platform */
function rng(seed) {
    let a = seed >>> 0;
    const next = () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    next.int = (n) => Math.floor(next() * n);
    next.pick = (arr) => arr[Math.floor(next() * arr.length)];
    return next;
}

const cp = (...codes) => String.fromCodePoint(...codes);
const nfd = (s) => s.normalize('NFD');
const nfc = (s) => s.normalize('NFC');

/* ------------------------------------------------------------------ */
/* English prose                                                       */

const PROSE = [
    'The quick brown fox jumps over the lazy dog.',
    'Hello, world!',
    'Hello world',
    'It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.',
    'Call me Ishmael. Some years ago - never mind how long precisely - having little or no money in my purse, I thought I would sail about a little.',
    'Quantization maps each weight to one of a small number of levels; GPTQ chooses them column by column, correcting the error as it goes.',
    'In 1969, Neil Armstrong became the first person to walk on the Moon.',
    'She sells sea shells by the sea shore.',
    'Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal, thank you very much.',
    'Why? Because... well, nobody knows!!!',
    'E-mail me at john.doe@example.com or visit https://example.org/path?query=1&x=y#frag.',
    'The U.S.A. and the U.K. signed the treaty on 3 Sept. 1783.',
    '"Quoted speech," she said, "can be tricky."',
    '\u201cCurly quotes\u201d and \u2018single ones\u2019 \u2014 with an em dash \u2013 and an en dash.',
    'Semicolons; colons: commas, periods. Exclamation! Question? Ellipsis\u2026',
    'A rose by any other name would smell as sweet.',
    'To be, or not to be, that is the question:\nWhether \'tis nobler in the mind to suffer\nThe slings and arrows of outrageous fortune,',
    'Four score and seven years ago our fathers brought forth on this continent, a new nation.',
    'ALL CAPS SENTENCE WITH SHOUTING AND NUMBERS 123 AND SYMBOLS #@!',
    'lowercase sentence without any punctuation at all',
    'MiXeD CaSe WoRdS aRe HaRd To ReAd',
    'camelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_SNAKE_CASE PascalCase',
    'The temperature was -3.5\u00b0C (25.7\u00b0F) at 06:45 on 2024-01-15.',
    'Price: $1,299.99 \u20ac1.299,99 \u00a3999 \u00a5120000 \u20b9450 \u20bf0.0042',
    'Percentages: 50% 99.9% 0.001% 100%',
    'Math: 2 + 2 = 4, 3 \u00d7 4 = 12, 10 \u00f7 2 = 5, x\u00b2 + y\u00b2 = z\u00b2, \u221a2 \u2248 1.414, \u2211 \u222b \u2202 \u221e \u2260 \u2264 \u2265',
    'Dictionary entry: Abacus \\Ab"a*cus\\, n.; pl. E. {Abacuses}, L. {Abaci}. [L. abacus, fr. Gr. ?.] (Arch.) A table.',
    'Aback \\A*back"\\, adv. [Pref. a- + back; AS. on b[ae]c.]\n1. Toward the back or rear; backward.',
    '1. (Zool.) A small fish.\n2. (Bot.) A plant of the genus {Rosa}.\n\nSyn: -- Flower; blossom.',
    'Shakespeare\'s sonnets, Dickens\'s novels, and the Joneses\' house.',
    'The data were collected between 1998 and 2003, inclusive.',
    'Section 4.2.1(b)(iii) applies unless otherwise noted [see Appendix C].',
    'This is a sentence.  This one follows two spaces.   This one three.',
    'Tabs\tseparate\tthese\twords.',
    'Line one\nLine two\nLine three',
    'Windows line one\r\nWindows line two\r\n',
    'Old Mac line one\rOld Mac line two',
    'Paragraph one.\n\nParagraph two.\n\n\nParagraph three after two blank lines.',
    '  leading spaces',
    'trailing spaces  ',
    '   both sides   ',
    ' a',
    'a ',
    '\tleading tab',
    'trailing newline\n',
    '\nleading newline',
    'hyphen-ated words, well-known facts, state-of-the-art models',
    'Its own, it\'s done, its\' wrong.',
    'O\'Brien and D\'Angelo went to McDonald\'s.',
    'Rock \'n\' roll, \'90s music, and the \'em dash.',
    'He said "I\'ll be back" \u2014 and he was.',
    'Tokenizers split text into tokens; models predict the next token.',
];

const WORDS = ('the of and to in is was for that with as on by at from his her it an are were be this which ' +
    'or had not but have they one all their there has been if more when will would who so no out up into ' +
    'time only new some could these two may first then do any like my now over such our man me even most ' +
    'made after also did many before must through back years where much your way well down should because ' +
    'each just those people how too little state good very make world still own see men work long get here ' +
    'between both life being under never day same another know while last might us great old year off come ' +
    'since against go came right used take three quantization tokenizer model weight matrix hessian column ' +
    'calibration perplexity layer attention embedding vocabulary merge byte unicode normalization dictionary').split(' ');

function genProse(r, n) {
    const out = [];
    const punct = ['.', '.', '.', '!', '?', ',', ';', ':', '...'];
    for (let i = 0; i < n; i++) {
        const len = 3 + r.int(25);
        const words = [];
        for (let k = 0; k < len; k++) {
            let w = r.pick(WORDS);
            const roll = r();
            if (k === 0 || roll < 0.05)
                w = w[0].toUpperCase() + w.slice(1);
            else if (roll < 0.08)
                w = w.toUpperCase();
            if (r() < 0.08)
                w += r.pick([',', ';', ':']);
            if (r() < 0.04)
                w = '"' + w + '"';
            if (r() < 0.03)
                w = '(' + w + ')';
            if (r() < 0.04)
                w += r.pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]);
            if (r() < 0.03)
                w = String(r.int(10000));
            words.push(w);
        }
        let s = words.join(' ') + r.pick(punct);
        if (r() < 0.15)
            s += ' ' + s;
        if (r() < 0.1)
            s = s.replace(/ /g, () => (r() < 0.1 ? '  ' : ' '));
        if (r() < 0.08)
            s += '\n';
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* source code                                                         */

const CODE = [
    '#include <stdio.h>\n\nint main(void)\n{\n    printf("Hello, world!\\n");\n    return 0;\n}\n',
    'static int add(int a, int b)\n{\n\treturn a + b;\n}\n',
    'for (size_t i = 0; i < n; i++) {\n    if (x[i] < 0.0f)\n        x[i] = -x[i];\n}',
    '/* a block comment */\n// a line comment\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n',
    'int *p = &x; *p += 1; p->next = NULL; a[i] <<= 2; b >>= 1; c ^= ~d; e |= f & g;',
    'typedef struct {\n    float *w;   /* (rows, cols) */\n    size_t rows, cols;\n} matrix;\n',
    'if (rc < 0)\n        goto done;\ndone:\n    gq_free(buf);\n    return rc;',
    'def fib(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n',
    'class Foo(object):\n    def __init__(self, x: int = 0) -> None:\n        self.x = x\n\n    def __repr__(self):\n        return f"Foo(x={self.x!r})"\n',
    'import numpy as np\nx = np.arange(10, dtype=np.float32).reshape(2, 5)\nprint(x @ x.T)\n',
    'try:\n    value = int(s)\nexcept (ValueError, TypeError) as exc:\n    raise RuntimeError("bad value") from exc\n',
    'squares = [x ** 2 for x in range(10) if x % 2 == 0]\nd = {k: v for k, v in zip("abc", [1, 2, 3])}',
    '    # deeply indented comment\n        return None\n            pass\n',
    '{"name": "gptqd", "version": "0.1.0", "bits": 4, "group_size": 128, "desc_act": false, "sym": true}',
    '{\n  "model": {\n    "type": "BPE",\n    "vocab": {"a": 0, "b": 1},\n    "merges": ["a b"]\n  },\n  "added_tokens": []\n}',
    '[1, 2.5, -3e10, true, false, null, "x", {"nested": [[], {}]}]',
    '{"text": "escaped \\"quotes\\" and \\\\ backslashes \\n newline \\u00e9"}',
    '#!/bin/sh\nset -eu\nfor f in *.txt; do\n\techo "$f"\n\twc -l < "$f"\ndone\n',
    'ls -la /usr/local/bin | grep -E \'^-.*x\' | awk \'{print $9}\' > out.txt 2>&1 &',
    'export PATH="$HOME/.local/bin:$PATH"\nif [ -z "${VAR:-}" ]; then\n  echo "unset" >&2\n  exit 1\nfi',
    'make -j2 BUILD=build/me test && ./build/gptq eval model --blocks x.i32 --seqlen 256',
    'const f = async (x) => { await g(x?.y ?? 0); return `value: ${x}`; };',
    'fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!("{:?}", v);\n}',
    'SELECT id, name FROM jobs WHERE state = \'QUEUED\' ORDER BY created_at DESC LIMIT 10;',
    '<!DOCTYPE html>\n<html lang="en">\n  <head><meta charset="utf-8"><title>Test</title></head>\n  <body><p class="x">Hi &amp; bye &lt;3</p></body>\n</html>',
    'server:\n  port: 8080\n  workers: 4\n  paths:\n    - /v1/jobs\n    - /healthz\n',
    'all: build/gptq\n\nbuild/%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n',
    '--- a/core/x.c\n+++ b/core/x.c\n@@ -1,3 +1,4 @@\n int x;\n-int y;\n+int y = 0;\n+int z;\n',
    '\\begin{equation}\n  E = mc^2 \\quad \\text{and} \\quad \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}',
    'id,name,score\n1,"Smith, John",93.5\n2,O\'Neil,88\n3,,\n',
    '2024-03-01T12:34:56.789Z INFO [worker-3] job 7f3a quantized layer 12/32 in 1.23s (loss=0.000412)',
    'regex: ^(?:[a-z0-9!#$%&\'*+/=?^_`{|}~-]+)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$',
    'x=1;y=2;z=x+y;print(z)',
    '    \n    \n\n\t\t\n',
];

function genCodeVariants(r) {
    const out = [];
    for (const c of CODE) {
        out.push(c);
        out.push(c.replace(/\n/g, '\r\n'));
        out.push(c.replace(/^( {4})+/gm, (m) => '\t'.repeat(m.length / 4)));
        out.push(c.replace(/\n/g, '  \n').replace(/^/gm, '  '));
    }
    /* every line of every snippet alone, indentation included */
    for (const c of CODE)
        for (const line of c.split('\n'))
            if (line.length)
                out.push(line);
    /* random indentation of random lines */
    const lines = CODE.join('\n').split('\n').filter((l) => l.trim().length);
    for (let i = 0; i < 40; i++) {
        let s = '';
        const n = 1 + r.int(6);
        for (let k = 0; k < n; k++)
            s += r.pick(['', ' ', '  ', '    ', '        ', '\t', '\t\t', ' \t']) + r.pick(lines).trim() +
                r.pick(['\n', '\r\n', '\n\n', ' \n', '\t\n', '']);
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* whitespace                                                          */

const WS = [
    ' ', '\t', '\n', '\r\n', '\r', '\u000b', '\u000c', '\u0085', '\u00a0', '\u1680', '\u2000', '\u2002', '\u2003',
    '\u2007', '\u2009', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\u180e', '\u200b', '\ufeff',
];

function genWhitespace(r) {
    const out = [];
    for (const w of WS) {
        for (const n of [1, 2, 3, 5, 8])
            out.push(w.repeat(n));
        out.push('a' + w + 'b');
        out.push('word' + w + w + 'word');
        out.push(w + 'leading');
        out.push('trailing' + w);
        out.push('Hello' + w + 'world' + w);
        out.push('123' + w + '456');
        out.push('!' + w + '?');
    }
    for (let i = 0; i < 80; i++) {
        let s = '';
        const n = 1 + r.int(8);
        for (let k = 0; k < n; k++) {
            const run = 1 + r.int(4);
            for (let j = 0; j < run; j++)
                s += r.pick(WS.slice(0, 9));
            if (r() < 0.7)
                s += r.pick(['x', 'the', 'Word', '42', '.', '\u00e9t\u00e9', '\u4e2d\u6587', '(', 'a-b']);
        }
        out.push(s);
    }
    out.push(' '.repeat(16), ' '.repeat(17) + 'x', 'x' + ' '.repeat(33), '\n'.repeat(10), '\r\n'.repeat(7),
        ' \n \n \n', '\n \n \n ', '\t \t \t', ' \t\n\r\u000b\u000c', 'a \n b', 'a\n\n\nb', 'a  \n\n  b');
    return out;
}

/* ------------------------------------------------------------------ */
/* numbers                                                             */

function genNumbers(r) {
    const out = ['0', '1', '12', '123', '1234', '12345', '123456', '1234567', '12345678', '123456789',
        '1234567890', '00001', '007', '3.14159265358979323846', '-42', '+42', '1e10', '6.022e23', '1.6E-19',
        '0x1F 0xdeadbeef 0b1011 0o777', '1,000,000', '1.000.000,50', '1 000 000', '1_000_000', '\u00bd \u00bc \u00be \u2153',
        '\u00b9\u00b2\u00b3 x\u2070\u2074\u2075', 'H\u2082O CO\u2082', '\u2160 \u2161 \u2162 \u216b \u217b', '\u2460\u2461\u2462 \u2474 \u248f',
        '\uff11\uff12\uff13 \uff10', '\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669', '\u06f1\u06f2\u06f3\u06f4',
        '\u0966\u0967\u0968\u0969 \u096f', '\u09e6\u09e7 \u0e51\u0e52\u0e53 \u1040\u1041', '\u4e00\u4e8c\u4e09 \u5341 \u767e \u5343 \u4e07',
        '\ud835\udfce\ud835\udfcf\ud835\udfd0 \ud835\udfd8', '3rd 21st 42nd 100th', 'v1.2.3 v10.0.0-rc.1+build.5',
        '192.168.0.1 ::1 fe80::1%eth0', '+1 (555) 123-4567', '2024-01-15', '15/01/2024', '01/15/2024',
        '15.01.2024', '2024-01-15T08:30:00+02:00', '08:30:00.123', '12:00 AM', '1999\u20132000', 'Q3 2023',
        'ISBN 978-3-16-148410-0', '4111 1111 1111 1111', 'pi = 3.14, e = 2.718, phi = 1.618'];
    for (let len = 1; len <= 40; len++) {
        let s = String(1 + r.int(9));
        while (s.length < len)
            s += String(r.int(10));
        out.push(s);
    }
    for (let i = 0; i < 60; i++) {
        const kind = r.int(6);
        const big = () => String(r.int(1e9)) + String(r.int(1e6));
        if (kind === 0)
            out.push((r() * 10 ** r.int(12)).toFixed(r.int(8)));
        else if (kind === 1)
            out.push(`${1900 + r.int(200)}-${String(1 + r.int(12)).padStart(2, '0')}-${String(1 + r.int(28)).padStart(2, '0')}`);
        else if (kind === 2)
            out.push(`The total was ${big()} units, or ${(r() * 100).toFixed(2)}% of ${r.int(1e5)}.`);
        else if (kind === 3)
            out.push(big() + r.pick(['', ' ', 'a', 'abc', '.', '\n']) + big());
        else if (kind === 4)
            out.push(`${r.int(24)}:${String(r.int(60)).padStart(2, '0')} ${r.int(1000)}x${r.int(1000)} ${-r.int(500)}`);
        else
            out.push('item' + r.int(1e6) + ' v' + r.int(100) + '.' + r.int(100) + ' #' + r.int(1e4));
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* accents: precomposed and decomposed forms                           */

const ACCENTED = [
    'caf\u00e9', 'na\u00efve', 'r\u00e9sum\u00e9', 'cr\u00e8me br\u00fbl\u00e9e', 'fa\u00e7ade', 'pi\u00f1ata', 'jalape\u00f1o',
    '\u00fcber', 'Stra\u00dfe', 'Gr\u00f6\u00dfe', 'M\u00fcller', '\u00c5ngstr\u00f6m', 'S\u00e3o Paulo', 'Bras\u00edlia',
    'Kraków', '\u0141\u00f3d\u017a', '\u017b\u00f3\u0142\u0107', 'P\u0159\u00edli\u0161 \u017elu\u0165ou\u010dk\u00fd k\u016f\u0148 \u00fap\u011bl \u010f\u00e1belsk\u00e9 \u00f3dy.',
    'Sm\u00f8rrebr\u00f8d', '\u00c6r\u00f8sk\u00f8bing', 'Reykjav\u00edk \u00de\u00f3r\u00f0ur', '\u0130stanbul \u0131\u015f\u0131k \u011f', 'Rom\u00e2nia \u0219i \u021b',
    'L\u00e9a a \u00e9t\u00e9 \u00e0 l\u2019\u00e9cole o\u00f9 elle a appris le fran\u00e7ais.',
    'El ni\u00f1o comi\u00f3 una manzana y dijo: \u00a1qu\u00e9 rica! \u00bfVerdad?',
    'Der Fu\u00dfg\u00e4nger \u00fcberquerte die Stra\u00dfe bei Gr\u00fcn.',
    'A \u00e1 \u00e0 \u00e2 \u00e4 \u00e3 \u00e5 \u0101 \u0103 \u0105 \u01ce \u1ea1 \u1ea3 \u1ea5 \u1ea7 \u1ea9 \u1eab \u1ead',
    'E \u00c9 \u00c8 \u00ca \u00cb \u0112 \u0114 \u0116 \u0118 \u011a \u1eb8 \u1eba \u1ebc \u1ebe',
    '\u1e9b\u0323 \u1e69 \u1e0b\u0323 \u01fa \u01ff \u1e08',
    '\u00c5 (A-ring) vs \u212b (Angstrom sign) vs A\u030a',
    '\u2126 (Ohm) vs \u03a9 (Omega), \u212a (Kelvin) vs K',
    '\ufb01nance \ufb02ow \ufb00 \ufb03 \ufb04 \ufb05 \ufb06 (ligatures)',
    '\u01c4 \u01c5 \u01c6 \u01c7 \u01c8 \u01c9 \u01f1',
    '\u1e9e \u00df SS ss',
    '\u017ftra\u00dfe \u017f \u017fs \u017f\u017f',
];

function genAccents(r) {
    const out = [];
    for (const s of ACCENTED) {
        out.push(nfc(s));
        const d = nfd(s);
        if (d !== nfc(s))
            out.push(d);
    }
    /* mixed forms in one line */
    for (let i = 0; i < 20; i++) {
        const parts = [];
        for (let k = 0; k < 4; k++) {
            const s = r.pick(ACCENTED);
            parts.push(r() < 0.5 ? nfd(s) : nfc(s));
        }
        out.push(parts.join(r.pick([' ', ', ', '\n', ''])));
    }
    /* combining marks in non-canonical order: NFC must reorder them */
    const marks = [0x0301, 0x0300, 0x0302, 0x0303, 0x0308, 0x0323, 0x0327, 0x0328, 0x031b, 0x0331, 0x0345, 0x0361, 0x05b0,
        0x05bc, 0x0651, 0x064e, 0x093c, 0x094d, 0x3099, 0x309a, 0x20d7, 0x1dc0];
    out.push('a' + cp(0x0301, 0x0323), 'a' + cp(0x0323, 0x0301), 'e' + cp(0x0301, 0x0301, 0x0301),
        'q' + cp(0x0307, 0x0323), 'q' + cp(0x0323, 0x0307), 'o' + cp(0x031b, 0x0301, 0x0323),
        '\u1eda vs O' + cp(0x0323, 0x031b, 0x0301), cp(0x0301) + 'leading combining mark', 'x' + cp(0x20e3),
        '1' + cp(0xfe0f, 0x20e3), '\u0915\u093c \u0958 \u0929 \u0928\u093c', '\u09a1\u09bc \u09dc', '\u0b47\u0b3e \u0b4b',
        '\u1100\u1161\u11a8 \uac01', '\u0c46\u0c56 \u0c48', 'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333');
    for (let i = 0; i < 25; i++) {
        let s = '';
        for (let k = 0; k < 6; k++) {
            s += r.pick(['a', 'e', 'o', 'u', 'n', 'c', 'A', '\u0905', '\u05d0', '\u3042', ' ', 'x']);
            const nm = r.int(4);
            for (let j = 0; j < nm; j++)
                s += cp(r.pick(marks));
        }
        out.push(s);
    }
    /* CJK compatibility ideographs and other singletons NFC replaces */
    out.push('\uf900\uf901\uf902\uf903 \uf9dc \ufa10', '\u2000\u2001 \u212b \u2126 \u1fef \u0340\u0341 \u0374 \u037e \u0387');
    return out;
}

/* ------------------------------------------------------------------ */
/* other scripts                                                       */

const SCRIPTS = [
    /* Vietnamese */
    'Ti\u1ebfng Vi\u1ec7t l\u00e0 ng\u00f4n ng\u1eef ch\u00ednh th\u1ee9c c\u1ee7a Vi\u1ec7t Nam.',
    'T\u00f4i kh\u00f4ng bi\u1ebft ph\u1ea3i n\u00f3i g\u00ec v\u1edbi anh \u1ea5y.',
    'H\u00e0 N\u1ed9i m\u00f9a thu c\u00f3 hoa s\u1eefa n\u1edf.',
    'Ch\u00fang t\u00f4i \u0111\u00e3 \u0103n ph\u1edf b\u00f2 \u1edf ch\u1ee3 B\u1ebfn Th\u00e0nh.',
    'C\u00f3 c\u00f4ng m\u00e0i s\u1eaft, c\u00f3 ng\u00e0y n\u00ean kim.',
    'NG\u01af\u1edcI VI\u1ec6T \u0110\u1ecaNH C\u01af \u1ede \u0110\u1ed2NG B\u1eb0NG S\u00d4NG H\u1ed2NG',
    /* Greek */
    '\u0397 \u03b3\u03bb\u03ce\u03c3\u03c3\u03b1 \u03b5\u03af\u03bd\u03b1\u03b9 \u03ad\u03bd\u03b1 \u03c3\u03cd\u03c3\u03c4\u03b7\u03bc\u03b1 \u03b5\u03c0\u03b9\u03ba\u03bf\u03b9\u03bd\u03c9\u03bd\u03af\u03b1\u03c2.',
    '\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03c3\u03b1\u03c2, \u03c4\u03b9 \u03ba\u03ac\u03bd\u03b5\u03c4\u03b5;',
    '\u039f \u03a3\u03c9\u03ba\u03c1\u03ac\u03c4\u03b7\u03c2 \u03ae\u03c4\u03b1\u03bd \u0391\u03b8\u03b7\u03bd\u03b1\u03af\u03bf\u03c2 \u03c6\u03b9\u03bb\u03cc\u03c3\u03bf\u03c6\u03bf\u03c2.',
    '\u1f08\u03bd\u03b4\u03c1\u03b1 \u03bc\u03bf\u03b9 \u1f14\u03bd\u03bd\u03b5\u03c0\u03b5, \u039c\u03bf\u1fe6\u03c3\u03b1, \u03c0\u03bf\u03bb\u03cd\u03c4\u03c1\u03bf\u03c0\u03bf\u03bd',
    '\u0390 \u03b0 \u1fd3 \u1fe3 \u03ac\u03ad\u03ae\u03af\u03cc\u03cd\u03ce \u1f71\u1f73\u1f75',
    /* Cyrillic */
    '\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0444\u0440\u0430\u043d\u0446\u0443\u0437\u0441\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a, \u0434\u0430 \u0432\u044b\u043f\u0435\u0439 \u0447\u0430\u044e.',
    '\u041c\u043e\u0441\u043a\u0432\u0430 \u2014 \u0441\u0442\u043e\u043b\u0438\u0446\u0430 \u0420\u043e\u0441\u0441\u0438\u0438.',
    '\u0423\u043a\u0440\u0430\u0457\u043d\u0430, \u041a\u0438\u0457\u0432, \u0457\u0436\u0430\u043a, \u0491\u0430\u043d\u043e\u043a.',
    '\u0421\u0440\u043f\u0441\u043a\u0438: \u0402\u043e\u0440\u0452\u0435, \u0409\u0443\u0431\u0438\u0448\u0430, \u040a, \u040f; \u0411\u0435\u043b\u0430\u0440\u0443\u0441\u043a\u0430\u044f: \u045e',
    '\u0419 \u0439 \u0401 \u0451 (\u0438\u0306 \u0435\u0308 decomposed)',
    /* Arabic, Persian */
    '\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0647\u064a \u0625\u062d\u062f\u0649 \u0623\u0643\u062b\u0631 \u0627\u0644\u0644\u063a\u0627\u062a \u0627\u0646\u062a\u0634\u0627\u0631\u0627\u064b \u0641\u064a \u0627\u0644\u0639\u0627\u0644\u0645.',
    '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
    '\u0627\u0644\u0633\u0651\u064e\u0644\u064e\u0627\u0645\u064f \u0639\u064e\u0644\u064e\u064a\u0652\u0643\u064f\u0645\u0652',
    '\u0641\u0627\u0631\u0633\u06cc \u06a9\u0627\u0645\u067e\u06cc\u0648\u062a\u0631 \u06f1\u06f4\u06f0\u06f2',
    '\ufdfd \ufefb \ufef5 (presentation forms)',
    /* Hebrew */
    '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd',
    '\u05d1\u05bc\u05b0\u05e8\u05b5\u05d0\u05e9\u05b4\u05c1\u05d9\u05ea \u05d1\u05bc\u05b8\u05e8\u05b8\u05d0 \u05d0\u05b1\u05dc\u05b9\u05d4\u05b4\u05d9\u05dd',
    '\u05e2\u05d1\u05e8\u05d9\u05ea (Hebrew) mixed with English and 123',
    '\ufb2a\ufb2b \ufb1d \ufb4b',
    /* Hindi and other Indic */
    '\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0930\u0924 \u0915\u0940 \u0930\u093e\u091c\u092d\u093e\u0937\u093e \u0939\u0948\u0964',
    '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e',
    '\u0915\u093c\u0916\u093c\u0917\u093c\u091c\u093c\u0921\u093c\u0922\u093c\u092b\u093c\u092f\u093c',
    '\u0995\u09b2\u0995\u09be\u09a4\u09be \u09ac\u09be\u0982\u09b2\u09be \u09ad\u09be\u09b7\u09be',
    '\u0ba4\u0bae\u0bbf\u0bb4\u0bcd \u0bae\u0bca\u0bb4\u0bbf',
    /* Thai */
    '\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e44\u0e21\u0e48\u0e21\u0e35\u0e01\u0e32\u0e23\u0e40\u0e27\u0e49\u0e19\u0e27\u0e23\u0e23\u0e04\u0e23\u0e30\u0e2b\u0e27\u0e48\u0e32\u0e07\u0e04\u0e33',
    /* Chinese */
    '\u6211\u4eec\u4eca\u5929\u53bb\u516c\u56ed\u6563\u6b65\u3002',
    '\u4e2d\u534e\u4eba\u6c11\u5171\u548c\u56fd\u6210\u7acb\u4e8e1949\u5e74\u3002',
    '\u6f22\u5b57\u8207\u7e41\u9ad4\u5b57\uff1a\u81fa\u7063\u3001\u5ee3\u6771\u8a71',
    '\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\uff0c\u5305\u62ec\u5168\u89d2\u6807\u70b9\uff01\uff1f\uff08\uff09\u3010\u3011\u300a\u300b',
    '\u91cf\u5316\u6a21\u578b\u9700\u8981\u6821\u51c6\u6570\u636e\uff08calibration data\uff09\u548cHessian\u77e9\u9635\u3002',
    '\ud840\udc0b\ud840\udc89 \ud842\udfb7 (CJK Extension B)',
    /* Japanese */
    '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\u3072\u3089\u304c\u306a\u3001\u30ab\u30bf\u30ab\u30ca\u3001\u6f22\u5b57\u3002',
    '\u304a\u306f\u3088\u3046\u3054\u3056\u3044\u307e\u3059\uff01\u4eca\u65e5\u306f\u3044\u3044\u5929\u6c17\u3067\u3059\u306d\u3002',
    '\uff76\uff80\uff76\uff85 \uff8a\uff9d\uff76\uff78 (half-width katakana) \uff76\uff9e \uff8a\uff9f',
    '\u304b\u3099 \u304c \u30cf\u309a \u30d1 \u30a6\u3099 \u30f4',
    '\u30c8\u30fc\u30af\u30ca\u30a4\u30b6\u30fc\u306f\u30c6\u30ad\u30b9\u30c8\u3092\u30c8\u30fc\u30af\u30f3\u306b\u5206\u5272\u3057\u307e\u3059\u3002',
    /* Korean */
    '\ud55c\uad6d\uc5b4\ub294 \ud55c\uae00\ub85c \uc501\ub2c8\ub2e4.',
    '\uc548\ub155\ud558\uc138\uc694, \uc138\uacc4!',
    '\ub300\ud55c\ubbfc\uad6d\uc758 \uc218\ub3c4\ub294 \uc11c\uc6b8\uc785\ub2c8\ub2e4.',
    '\u3131\u3134\u3137\u314f\u3151 \u314e\u314f\u3134 (compatibility jamo)',
    /* misc */
    '\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8 \u0540\u0561\u0575\u0565\u0580\u0565\u0576 \u12a0\u121b\u122d\u129b',
    '\u1000\u103c\u1014\u103a\u1019\u102c \u1780\u1798\u17d2\u1796\u17bb\u1787\u17b6 \u0ea5\u0eb2\u0ea7',
    '\u13e3\u13b3\u13a9 \u1403\u14c4\u1483\u144e\u1450\u1466 \u2d5c\u2d49\u2d3c\u2d49\u2d4f\u2d30\u2d56',
    '\ud800\udf30\ud800\udf31\ud800\udf32 \ud801\udc00\ud801\udc01 \ud834\udd1e \ud835\udc00\ud835\udc01\ud835\udc02',
];

function genScripts(r) {
    const out = [];
    for (const s of SCRIPTS) {
        out.push(s);
        const d = nfd(s);
        if (d !== s && (/[\uac00-\ud7a3]/.test(s) || /[\u1ea0-\u1ef9\u00c0-\u01b0]/.test(s) || /[\u0370-\u03ff\u1f00-\u1fff]/.test(s)))
            out.push(d); /* decomposed Hangul (jamo), Vietnamese and Greek */
    }
    for (let i = 0; i < 30; i++) {
        const a = r.pick(SCRIPTS), b = r.pick(SCRIPTS);
        out.push(a + r.pick([' ', '\n', '', ' - ', '\t']) + b);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* emoji and symbols                                                   */

const EMOJI = [
    '\ud83d\ude00', '\ud83d\ude02\ud83d\ude02\ud83d\ude02', '\u2764\ufe0f', '\u2764', '\u263a\ufe0f', '\ud83d\udc4d', '\ud83d\udc4d\ud83c\udffb', '\ud83d\udc4d\ud83c\udffd', '\ud83d\udc4d\ud83c\udfff',
    '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66', '\ud83d\udc69\u200d\ud83d\udcbb', '\ud83e\uddd1\ud83c\udffe\u200d\ud83d\ude80', '\ud83c\udff3\ufe0f\u200d\ud83c\udf08', '\ud83d\udc41\ufe0f\u200d\ud83d\udde8\ufe0f',
    '\ud83c\uddeb\ud83c\uddf7', '\ud83c\uddef\ud83c\uddf5\ud83c\uddfa\ud83c\uddf8\ud83c\udde9\ud83c\uddea', '\ud83c\uddfa', '\ud83c\udff4\udb40\udc67\udb40\udc62\udb40\udc73\udb40\udc63\udb40\udc74\udb40\udc7f',
    '1\ufe0f\u20e3 #\ufe0f\u20e3 *\ufe0f\u20e3', '\ud83e\udd16 \ud83e\udde0 \ud83d\ude80 \ud83c\udf89 \ud83d\udd25 \ud83d\udcaf', '\ud83e\udee0\ud83e\udee1\ud83e\udee3',
    '\u2600\u2601\u2602\u2603 \u2605\u2606 \u2660\u2663\u2665\u2666 \u265a\u265b', '\u2190\u2191\u2192\u2193 \u21d2 \u21d4 \u27f6',
    '\u2500\u2502\u250c\u2510\u2514\u2518 \u2588\u2591\u2592\u2593', '\u00a9 \u00ae \u2122 \u00a7 \u00b6 \u2020 \u2021 \u2022 \u00b7 \u00b0',
    '\ud83c\udc04\ud83c\udccf \ud83c\udd70\ufe0f \ud83c\ude01', '\u26a0\ufe0f \u2705 \u274c \u2753',
];

function genEmoji(r) {
    const out = EMOJI.slice();
    for (const e of EMOJI)
        out.push('I love it ' + e + '!', e + e, 'x' + e + 'y');
    for (let i = 0; i < 30; i++) {
        let s = '';
        for (let k = 0; k < 1 + r.int(6); k++)
            s += r.pick(EMOJI) + r.pick(['', ' ', ' and ', '\n', 'ok', '']);
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* invisible, control and bidi characters                              */

function genControl(r) {
    const out = [];
    for (let c = 1; c < 0x20; c++) {
        out.push(cp(c));
        out.push('ab' + cp(c) + 'cd');
    }
    out.push('\u007f', 'a\u007fb', '\u0080\u0081\u009f', 'x\u0085y', 'tab\u0009and\u000bvt\u000cff');
    const zw = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u200e', '\u200f', '\u202a', '\u202b',
        '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069', '\u061c', '\u034f', '\ufe00', '\ufe0f',
        '\udb40\udc01', '\udb40\udc20', '\ufffc', '\ufffd', '\ufff9\ufffa\ufffb'];
    for (const z of zw) {
        out.push(z);
        out.push('zero' + z + 'width');
        out.push(z + 'start');
    }
    out.push('\ufeffBOM at the start', 'soft\u00adhy\u00adphen', 'English \u202e\u05e2\u05d1\u05e8\u05d9\u05ea\u202c back',
        '\u200f\u05e9\u05dc\u05d5\u05dd\u200e abc', 'non\u2011breaking\u2010hyphens', '\ufff0\uffef\ufffe\uffff',
        '\ue000\ue001 private use \uf8ff', '\udb80\udc00 \udbff\udffd (plane 15/16 private use)', '\ud83f\udffe \ud87f\udfff');
    for (let i = 0; i < 20; i++) {
        let s = '';
        for (let k = 0; k < 8; k++)
            s += r.pick(['a', 'b', ' ', '.', '1']) + (r() < 0.5 ? r.pick(zw) : cp(1 + r.int(31)));
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* very long words and runs                                            */

function genLong(r) {
    const out = [];
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    let w = '';
    for (let i = 0; i < 1200; i++)
        w += letters[r.int(26)];
    out.push(w);
    out.push('supercalifragilisticexpialidocious'.repeat(40));
    out.push('a'.repeat(1500), 'A'.repeat(1001), '='.repeat(1200), '-'.repeat(300), '.'.repeat(1100), '0'.repeat(1050),
        '9'.repeat(333), '12345678901234567890'.repeat(60), ' '.repeat(1200), '\t'.repeat(400), '\n'.repeat(1100),
        '\r\n'.repeat(300), '\u00e9'.repeat(600), nfd('\u00e9').repeat(600), '\u4e2d'.repeat(700), '\ud83d\ude00'.repeat(300),
        '\u0430'.repeat(1000), 'ab'.repeat(700), 'the '.repeat(300), "'s".repeat(400), '<s>'.repeat(200),
        '<|endoftext|>'.repeat(50), '\u2581'.repeat(500), 'x' + ' '.repeat(2000) + 'y', '\u3000'.repeat(300),
        '\u200b'.repeat(300), ('\u0915\u094d\u0937').repeat(300), '\uac00'.repeat(500));
    let mixed = '';
    for (let i = 0; i < 1100; i++)
        mixed += r.pick(['a', 'B', '\u00e9', '\u4e2d', '1', '\u0434', '\u05d0', '\u3042']);
    out.push(mixed);
    let url = 'https://example.com/';
    while (url.length < 1100)
        url += letters[r.int(26)] + (r() < 0.1 ? '/' : '');
    out.push(url);
    return out;
}

/* ------------------------------------------------------------------ */
/* strings that look like special tokens                               */

const SPECIALS = ['<s>', '</s>', '<unk>', '<pad>', '<|endoftext|>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
    '<|start_header_id|>', '<|end_header_id|>', '<|reserved_special_token_0|>', '<|reserved_special_token_250|>',
    '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<think>', '</think>', '<tool_call>', '<|fim_prefix|>',
    '<0x41>', '<0x0A>', '<0xFF>', '<0x00>', '\u2581', '\u0120', '\u010a', '<mask>', '[CLS]', '[SEP]'];

function genSpecial(r) {
    const out = SPECIALS.slice();
    for (const s of SPECIALS)
        out.push('hello' + s + 'world', ' ' + s + ' ', s + s, 'A ' + s + '\n');
    out.push('<|endoftext', '|endoftext|>', '<|endoftext|', 'endoftext', '<|ENDOFTEXT|>', '< |endoftext| >',
        '<|endoftext|>x', 'x<|endoftext|>', '<<|endoftext|>>', '<|<|endoftext|>|>', '<s', 's>', '</s', '< s>', '<s >',
        '<S>', '<<s>>', '<</s>>', '<unk', 'unk>', '<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>',
        '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>',
        '<|begin_of_text|>', '<|begin_of_text', '<|reserved_special_token_', '<|reserved_special_token_9999|>',
        '<s>[INST] Hello [/INST] Hi!</s>', '[INST]', '<0x4', '0x41>', '<0x41><0x42><0x43>', '<0xG1>',
        '\u2581\u2581hello', '\u2581the \u2581quick', '\u0120the', '\u0120\u0120', '\u010a\u010a', 'd\u0120\u0120\u010a',
        'Hello <s> world</s> and <unk>!', '<think>\nreasoning\n</think>\n\nanswer', 'text<|im_end|><|endoftext|>',
        '<|endoftext|> <|endoftext|>  <|endoftext|>', ' <|im_start|> system', '<s><s></s></s>', '</s><s>');
    for (let i = 0; i < 30; i++) {
        let s = '';
        for (let k = 0; k < 1 + r.int(5); k++) {
            const sp = r.pick(SPECIALS);
            const frag = r() < 0.3 ? sp.slice(0, 1 + r.int(sp.length)) : sp;
            s += r.pick(['', ' ', '\n', 'word', ' the ', '123']) + frag;
        }
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* contractions and case                                               */

function genContractions(r) {
    const out = ["it's don't they're we've I'm you'll he'd", "IT'S DON'T THEY'RE WE'VE I'M YOU'LL HE'D",
        "It'S DoN'T tHey'Re We'Ve i'M yOu'Ll He'D", "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "'s'll've",
        "y'all'd've", "rock'n'roll", "'tis 'twas", "''s", "'", "''", "'''", "' s", "'ss", "'ts", "'x 'z 'q",
        "don\u2019t it\u2019s (curly apostrophe)", "it\u02bcs (modifier letter apostrophe)", "It'\u017f (long s)", "'\u017f '\u017fs",
        "'\u212a (kelvin)", "I'm'll", "l'homme d'\u00e9t\u00e9 qu'il", "the 90's and the '90s", "can't won't shan't ain't",
        "John's, James's and the boys' toys", "'\u00e9t\u00e9' '\u00e9", "'1 '2 '42", "'\u4e2d", "x'\n's", "a 's", "a  'll"];
    const base = ['s', 't', 're', 've', 'm', 'll', 'd'];
    for (let i = 0; i < 30; i++) {
        let s = '';
        for (let k = 0; k < 4; k++) {
            let c = r.pick(base);
            c = c.split('').map((ch) => (r() < 0.5 ? ch.toUpperCase() : ch)).join('');
            s += r.pick(['word', 'X', '', ' ', '123', '\u00e9', '\u017f']) + r.pick(["'", '\u2019']) + c + r.pick(['', ' ', 'x', '.', '\n']);
        }
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */
/* the empty string and single characters                              */

function genSingles() {
    const out = [''];
    for (let c = 0x20; c < 0x7f; c++)
        out.push(cp(c));
    const more = [0xa0, 0xa9, 0xb5, 0xdf, 0xe9, 0xff, 0x100, 0x131, 0x17f, 0x1c5, 0x2bc, 0x300, 0x391, 0x3c2, 0x3a3, 0x410,
        0x5d0, 0x627, 0x905, 0xe01, 0x10d0, 0x1e9e, 0x2028, 0x20ac, 0x2126, 0x2581, 0x3000, 0x3042, 0x30a2, 0x4e00,
        0xac00, 0xd7a3, 0x1100, 0x1161, 0x11a8, 0xf900, 0xfb01, 0xfeff, 0xff21, 0xfffd, 0x10000, 0x1d400, 0x1f600,
        0x1f1fa, 0x20000, 0x2fa1d, 0xe0001, 0xf0000, 0x10fffd, 0x120, 0x10a, 0x0100, 0x00ad];
    for (const c of more)
        out.push(cp(c));
    return out;
}

/* ------------------------------------------------------------------ */
/* mixtures of everything above                                        */

function genMixed(r, pools, n) {
    const out = [];
    const seps = ['', ' ', '  ', '\n', '\r\n', '\t', ', ', '. ', '\u00a0', '\u3000'];
    for (let i = 0; i < n; i++) {
        let s = '';
        const k = 2 + r.int(4);
        for (let j = 0; j < k; j++) {
            let piece = r.pick(r.pick(pools));
            if (piece.length > 200) {
                const at = r.int(piece.length - 100);
                piece = Array.from(piece.slice(at, at + 100)).slice(1, -1).join(''); /* no split surrogate pair */
            }
            s += (j ? r.pick(seps) : '') + piece;
        }
        out.push(s);
    }
    return out;
}

/* ------------------------------------------------------------------ */

function main() {
    const prose = PROSE.concat(genProse(rng(1), 260));
    const code = genCodeVariants(rng(2));
    const ws = genWhitespace(rng(3));
    const numbers = genNumbers(rng(4));
    const accents = genAccents(rng(5));
    const scripts = genScripts(rng(6));
    const emoji = genEmoji(rng(7));
    const control = genControl(rng(8));
    const long = genLong(rng(9));
    const special = genSpecial(rng(10));
    const contractions = genContractions(rng(11));
    const singles = genSingles();
    const pools = [prose, code, ws, numbers, accents, scripts, emoji, control, special, contractions];
    const mixed = genMixed(rng(12), pools, 420);

    const all = [].concat(singles, prose, code, ws, numbers, accents, scripts, emoji, control, long, special,
        contractions, mixed);
    const seen = new Set();
    const lines = [];
    for (const s of all) {
        if (seen.has(s))
            continue;
        seen.add(s);
        if (s.includes('\u0000'))
            throw new Error('U+0000 in corpus text: ' + JSON.stringify(s.slice(0, 40)));
        if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s))
            throw new Error('lone surrogate in corpus text: ' + JSON.stringify(s.slice(0, 40)));
        lines.push(JSON.stringify({ text: s }));
    }
    if (lines.length < 2000)
        throw new Error(`corpus has only ${lines.length} lines (want at least 2000)`);
    const text = lines.join('\n') + '\n';
    if (process.argv[2])
        fs.writeFileSync(process.argv[2], text);
    else
        process.stdout.write(text);
}

main();
