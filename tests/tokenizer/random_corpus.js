#!/usr/bin/env node
/*
 * random_corpus.js - a random tokenizer corpus for the differential test
 * (tests/tokenizer_diff.sh), the same for the same seed:
 *
 *   node tests/tokenizer/random_corpus.js SEED N [OUT]   (default: stdout)
 *
 * N lines of {"text": ...}: each text strings together a few pieces drawn
 * from ASCII words and punctuation, whitespace runs (CRLF, NBSP, U+3000 ...),
 * digit runs and decimals, accented words in composed or decomposed form,
 * stray combining marks, CJK, kana and Hangul, emoji with modifiers and
 * ZWJ, special-token strings and fragments of them, contractions, and
 * random code points from the whole BMP and the astral planes.  Never
 * U+0000 or a surrogate code point, so every text is valid UTF-8 that the
 * C side can read from JSON.
 */
'use strict';

const fs = require('fs');

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

const WORDS = ['the', 'of', 'and', 'a', 'to', 'in', 'is', 'you', 'that', 'it', 'he', 'was', 'for', 'on', 'are', 'as',
    'with', 'his', 'they', 'I', 'at', 'be', 'this', 'have', 'from', 'or', 'one', 'had', 'by', 'word', 'but', 'not',
    'what', 'all', 'were', 'we', 'when', 'your', 'can', 'said', 'Hello', 'World', 'GPTQ', 'tokenizer', 'model',
    'quantize', 'Llama', 'Qwen', 'Mistral', 'x', 'foo_bar', 'FooBar', 'URL', 'https://x.io/a?b=c', 'e-mail', 'C++',
    'don', 'naïve', 'Zürich'];
const PUNCT = ['.', ',', '!', '?', ';', ':', '-', '--', '...', '(', ')', '[', ']', '{', '}', '"', "'", '`', '/', '\\',
    '@', '#', '$', '%', '^', '&', '*', '+', '=', '<', '>', '|', '~', '_', '\u2014', '\u2026', '\u00ab', '\u00bb',
    '\u201c', '\u201d', '\u3002', '\uff0c'];
const WS = [' ', ' ', ' ', '\t', '\n', '\r\n', '\r', '\u000b', '\u000c', '\u0085', '\u00a0', '\u1680', '\u2002',
    '\u2009', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\u200b', '\ufeff'];
const ACCENTED = ['caf\u00e9', 'na\u00efve', '\u00fcber', 'Stra\u00dfe', 'ni\u00f1o', 'fran\u00e7ais', '\u00e0 la',
    '\u00c5ngstr\u00f6m', 'Ti\u1ebfng Vi\u1ec7t', '\u1ea1\u1ea3\u1ea5\u1ea7', '\u0151\u0171', '\u01d6\u01d8', '\u1e69',
    '\u03ac\u03ad\u03ae', '\u0439\u0451', '\u0958\u0959', '\uf900\uf901', '\u212b\u2126', '\u304c\u30d1', '\uac00\ud7a3'];
const MARKS = [0x0300, 0x0301, 0x0302, 0x0303, 0x0308, 0x030a, 0x0323, 0x0327, 0x0328, 0x031b, 0x0345, 0x0591,
    0x05b0, 0x05bc, 0x064b, 0x0651, 0x093c, 0x094d, 0x0e48, 0x3099, 0x309a, 0x20d7, 0x1ab0, 0x1dc0, 0xfe20];
const CJK = ['\u4e2d\u6587', '\u6f22\u5b57', '\u65e5\u672c\u8a9e', '\u3072\u3089\u304c\u306a', '\u30ab\u30bf\u30ab\u30ca',
    '\ud55c\uad6d\uc5b4', '\uc548\ub155', '\uff76\uff80\uff76\uff85', '\u3001\u3002\u300c\u300d', '\ud840\udc0b',
    '\u4e00\u4e8c\u4e09', '\u91cf\u5316'];
const EMOJI = ['\ud83d\ude00', '\ud83d\udc4d', '\ud83c\udffd', '\u2764\ufe0f', '\ud83c\uddeb\ud83c\uddf7',
    '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67', '\ud83e\uddd1\ud83c\udffe\u200d\ud83d\ude80', '1\ufe0f\u20e3',
    '\ud83c\udff4\udb40\udc67\udb40\udc62\udb40\udc65\udb40\udc6e\udb40\udc67\udb40\udc7f', '\u200d', '\ufe0f', '\u263a'];
const SPECIAL = ['<s>', '</s>', '<unk>', '<|endoftext|>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
    '<|start_header_id|>', '<|reserved_special_token_3|>', '<|im_start|>', '<|im_end|>', '<think>', '<0x41>',
    '<0x0A>', '\u2581', '\u0120', '\u010a', '[INST]', '<pad>'];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Ve", "'\u017f", '\u2019s', "'"];

/*
 * The blocks Unicode 15.0, 15.1 and 16.0 added.  Our regexes classify
 * characters with PCRE2 10.42 (Unicode 14) and the library's Oniguruma with
 * Unicode 16, so a letter from these blocks is "unassigned" to us and may
 * split differently: a documented limitation (core/tokenizer.h), left out
 * of the random texts so that the test checks everything else.  (A few
 * dozen code points those versions added inside older blocks remain.)
 */
const NEWER_THAN_UNICODE_14 = [[0x105c0, 0x105ff], [0x10d40, 0x10d8f], [0x10ec0, 0x10eff], [0x11380, 0x113ff],
    [0x116d0, 0x116ff], [0x11b00, 0x11b5f], [0x11bc0, 0x11bff], [0x11f00, 0x11f5f], [0x13460, 0x143ff],
    [0x16100, 0x1613f], [0x16d40, 0x16d7f], [0x1cc00, 0x1cebf], [0x1d2c0, 0x1d2df], [0x1e030, 0x1e08f],
    [0x1e4d0, 0x1e4ff], [0x1e5d0, 0x1e5ff], [0x2ebf0, 0x2ee5f], [0x31350, 0x323af]];

/* One random code point: anywhere in the BMP or the astral planes, never U+0000 or a surrogate. */
function randomCodePoint(r) {
    for (;;) {
        const c = r() < 0.6 ? 1 + r.int(0xffff) : 0x10000 + r.int(0x100000);
        if ((c < 0xd800 || c > 0xdfff) && !NEWER_THAN_UNICODE_14.some(([a, b]) => c >= a && c <= b))
            return c;
    }
}

function piece(r) {
    switch (r.int(14)) {
    case 0:
    case 1: {
        let s = r.pick(WORDS);
        for (let k = r.int(4); k > 0; k--)
            s += ' ' + r.pick(WORDS);
        return s;
    }
    case 2:
        return r.pick(PUNCT).repeat(1 + r.int(3));
    case 3: {
        let s = '';
        for (let k = 1 + r.int(4); k > 0; k--)
            s += r.pick(WS);
        return s.repeat(1 + r.int(3));
    }
    case 4: {
        let s = String(r.int(10));
        for (let k = r.int(14); k > 0; k--)
            s += String(r.int(10));
        if (r() < 0.3)
            s += '.' + String(r.int(1000));
        return (r() < 0.5 ? ' ' : '') + s;
    }
    case 5: {
        const s = r.pick(ACCENTED);
        return r() < 0.5 ? s.normalize('NFD') : s.normalize('NFC');
    }
    case 6: {
        let s = r.pick(['a', 'e', 'o', 'n', ' ', '', '\u05d0', '\u3042', '1']);
        for (let k = 1 + r.int(4); k > 0; k--)
            s += String.fromCodePoint(r.pick(MARKS));
        return s;
    }
    case 7:
        return r.pick(CJK);
    case 8: {
        let s = r.pick(EMOJI);
        if (r() < 0.3)
            s += '\ud83c' + String.fromCharCode(0xdffb + r.int(5)); /* a skin tone modifier */
        return s;
    }
    case 9: {
        const sp = r.pick(SPECIAL);
        return r() < 0.3 ? sp.slice(0, 1 + r.int(sp.length)) : sp;
    }
    case 10:
        return r.pick(['word', 'It', 'x', '', ' ', 'you']) + r.pick(CONTRACTIONS);
    case 11:
    case 12: {
        let s = '';
        for (let k = 1 + r.int(4); k > 0; k--)
            s += String.fromCodePoint(randomCodePoint(r));
        return s;
    }
    default:
        return String.fromCodePoint(1 + r.int(0x7f)); /* ASCII, control characters included */
    }
}

function main() {
    const seed = Number(process.argv[2]);
    const n = Number(process.argv[3]);
    if (!Number.isInteger(seed) || !Number.isInteger(n) || n < 0) {
        process.stderr.write('usage: node random_corpus.js SEED N [OUT]\n');
        process.exit(2);
    }
    const r = rng(seed);
    const lines = [];
    for (let i = 0; i < n; i++) {
        let s = '';
        for (let k = 1 + r.int(12); k > 0; k--)
            s += (r() < 0.3 ? ' ' : '') + piece(r);
        if (r() < 0.1)
            s = ' ' + s;
        if (r() < 0.1)
            s += r.pick(WS);
        if (s.includes('\u0000') || /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s))
            throw new Error('generated an invalid text: ' + JSON.stringify(s));
        lines.push(JSON.stringify({ text: s }));
    }
    const text = lines.length ? lines.join('\n') + '\n' : '';
    if (process.argv[4])
        fs.writeFileSync(process.argv[4], text);
    else
        process.stdout.write(text);
}

main();
