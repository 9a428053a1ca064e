/**
 * Column values as the Debezium PostgreSQL connector 3.6 writes them through Kafka Connect's
 * JsonConverter, from PostgreSQL's text form, under Debezium's value options (`ValueOptions`).
 * Each built-in scalar type is one `Codec`: its Connect schema, the text -> logical value
 * conversion, and the JSON rendering of a logical value; lib/capture_debezium_types.ts picks a
 * column's codec and adds arrays and the extension types. The sources named in comments are
 * Debezium 3.6.1.Final classes unless said otherwise.
 * @module
 */

/** How one PostgreSQL type is written: its Connect schema and its values. */
export interface Codec {
  /** The schema's leading members, e.g. `"type":"int32"`. */
  readonly type: string;
  /** The schema's members after `optional` (name, version, doc, parameters), each with a leading comma. */
  readonly logical: string;
  /** The logical value of a text value; `undefined` when the text cannot be represented, `null` when Debezium writes null. */
  value(text: string): unknown;
  /** The JSON text of a logical value. */
  render(value: unknown): string;
  /** What Debezium writes for a NULL in a required column without default (JdbcValueConverters' fallbacks). */
  readonly fallback: unknown;
  /** What Debezium writes for an unchanged TOASTed value (UnchangedToastedPlaceholder); absent: not TOASTable here. */
  readonly toast?: unknown;
  /** For a value `value` returns null for: the option that cannot write it and the setting that can. */
  readonly refusal?: string;
}

/** Debezium's value options (PostgresConnectorConfig) under their property names' meaning. */
export interface ValueOptions {
  /** decimal.handling.mode: numeric and money as Decimal bytes, float64 or a string. */
  decimal: "precise" | "double" | "string";
  /** time.precision.mode: Debezium's time types by precision, MicroTime always, or Kafka Connect's (millis). */
  time: "adaptive" | "adaptive_time_microseconds" | "connect";
  /** binary.handling.mode: bytea as bytes (base64 in JSON), a base64 / URL-safe base64 / hex string. */
  binary: "bytes" | "base64" | "base64-url-safe" | "hex";
  /** hstore.handling.mode: a JSON text or a map. */
  hstore: "json" | "map";
  /** interval.handling.mode: MicroDuration (int64) or an ISO 8601 text. */
  interval: "numeric" | "string";
  /** money.fraction.digits: the scale of money's Decimal. */
  moneyFractionDigits: number;
  /** include.unknown.datatypes: a type Debezium has no schema for as binary (true) or left out (false). */
  includeUnknown: boolean;
}

/** Debezium 3.6.1's defaults of its value options. */
export const DEBEZIUM_VALUE_DEFAULTS: ValueOptions = {
  decimal: "precise",
  time: "adaptive",
  binary: "bytes",
  hstore: "json",
  interval: "numeric",
  moneyFractionDigits: 2,
  includeUnknown: false,
};

/** unavailable.value.placeholder's default, what Debezium writes for an unchanged TOASTed value. */
export const PLACEHOLDER = "__debezium_unavailable_value";
const PLACEHOLDER_BASE64 = btoa(PLACEHOLDER);

// ---- JSON rendering as Jackson writes it ------------------------------------------------------

/** A string as Jackson writes it: like JSON.stringify, but `\u001F`-style escapes in upper-case hex. */
export function jsonString(text: string): string {
  const json = JSON.stringify(text);
  if (!json.includes("\\u00")) return json;
  // An odd run of backslashes starts an escape; an even one is escaped backslashes followed by text.
  return json.replace(
    /(\\+)u00([0-9a-f]{2})/g,
    (all, slashes: string, hex: string) => slashes.length % 2 ? `${slashes}u00${hex.toUpperCase()}` : all,
  );
}

function plainOrScientific(digits: string, exponent: number): string {
  // Java's Double.toString/Float.toString: plain for 1e-3 <= |x| < 1e7, else d.dddE<n>; at least one fraction digit.
  if (exponent >= -3 && exponent < 7) {
    if (exponent < 0) return `0.${"0".repeat(-exponent - 1)}${digits}`;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
    return `${whole}.${digits.slice(exponent + 1) || "0"}`;
  }
  return `${digits[0]}.${digits.slice(1) || "0"}E${exponent}`;
}

function javaNumber(x: number, shortest: string): string {
  if (Number.isNaN(x)) return '"NaN"'; // Jackson quotes non-numeric numbers by default
  if (x === Infinity) return '"Infinity"';
  if (x === -Infinity) return '"-Infinity"';
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, exp] = shortest.replace(/^-/, "").split("e");
  const digits = mantissa.replace(".", "").replace(/0+$/, "") || "0";
  return (x < 0 ? "-" : "") + plainOrScientific(digits, Number(exp));
}

/** A float64 as Java's Double.toString (JDK 19+, shortest round-trip digits) and Jackson write it. */
export function javaDouble(x: number): string {
  return javaNumber(x, Number.isFinite(x) && x !== 0 ? x.toExponential() : "");
}

/** A float32 as Java's Float.toString writes it: the shortest digits that read back as the same float. */
export function javaFloat(x: number): string {
  if (!Number.isFinite(x) || x === 0) return javaNumber(x, "");
  let p = 1;
  while (p < 9 && Math.fround(Number(x.toPrecision(p))) !== x) p++;
  return javaNumber(x, x.toExponential(p - 1));
}

// ---- Calendar arithmetic on the proleptic Gregorian calendar, as java.time does -------------------

/** Days since 1970-01-01 of a proleptic Gregorian date, as java.time.LocalDate.toEpochDay computes it. */
function epochDay(year: number, month: number, day: number): number {
  let total = 365 * year;
  if (year >= 0) total += Math.trunc((year + 3) / 4) - Math.trunc((year + 99) / 100) + Math.trunc((year + 399) / 400);
  else total -= Math.trunc(year / -4) - Math.trunc(year / -100) + Math.trunc(year / -400);
  total += Math.trunc((367 * month - 362) / 12) + day - 1;
  if (month > 2) total -= isLeap(year) ? 1 : 2;
  return total - 719_528;
}

function isLeap(year: number): boolean {
  return (year & 3) === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** The proleptic Gregorian date of a day number (java.time.LocalDate.ofEpochDay). */
function civilDate(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day: doy - Math.floor((153 * mp + 2) / 5) + 1 };
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** A year as ISO_LOCAL_DATE prints it: four digits, a sign beyond 9999 or before year 0. */
function isoYear(year: number): string {
  if (year > 9999) return `+${year}`;
  return year < 0 ? `-${String(-year).padStart(4, "0")}` : String(year).padStart(4, "0");
}

// PostgreSQL's ISO DateStyle output: "2025-07-03", "0044-03-15 BC", "10000-01-01".
const DATE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const TIMESTAMP =
  /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/;
const TIME = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?$/;

const properYear = (digits: string, bc: string | undefined) => (bc ? 1 - Number(digits) : Number(digits));

function offsetSeconds(sign: string | undefined, h?: string, m?: string, s?: string): number {
  if (!sign) return 0;
  return (sign === "-" ? -1 : 1) * (Number(h) * 3600 + Number(m ?? 0) * 60 + Number(s ?? 0));
}

function micros(fraction: string | undefined): number {
  return fraction ? Number(fraction.padEnd(6, "0")) : 0;
}

/** A timestamp text's instant: whole seconds since 1970 (UTC) and the microsecond of the second. */
function parseTimestamp(text: string, zoned: boolean): { seconds: number; micro: number } | undefined {
  const m = TIMESTAMP.exec(text);
  if (!m || (m[8] !== undefined) !== zoned) return undefined;
  const days = epochDay(properYear(m[1], m[12]), Number(m[2]), Number(m[3]));
  const clock = Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
  return { seconds: days * 86_400 + clock - offsetSeconds(m[8], m[9], m[10], m[11]), micro: micros(m[7]) };
}

/** Microseconds of a timestamp, exact as a bigint when they pass 2^53. */
function epochMicros(seconds: number, micro: number): number | bigint {
  const us = seconds * 1_000_000 + micro;
  return Number.isSafeInteger(us) ? us : BigInt(seconds) * 1_000_000n + BigInt(micro);
}

// PGStatement.DATE_POSITIVE_INFINITY / DATE_NEGATIVE_INFINITY (pgjdbc), microseconds in PostgresValueConverter.
const TIMESTAMP_INFINITY_US = 9_223_372_036_825_200_000n;
const TIMESTAMP_NEG_INFINITY_US = -9_223_372_036_832_400_000n;

// ---- Codecs ----------------------------------------------------------------------------------------

/** A logical value rendered as `String(value)` (numbers, bigints, booleans). */
export const plain = (value: unknown) => String(value);
/** A logical string rendered as a JSON string. */
export const asString = (value: unknown) => jsonString(value as string);
/** The schema members of a named logical type. */
export const named = (name: string, version = 1) => `,"name":"${name}","version":${version}`;

/** int2 / int4 as Connect's int16 / int32. */
export function integer(type: "int16" | "int32", min: number, max: number): Codec {
  return {
    type: `"type":"${type}"`,
    logical: "",
    value: (text) => {
      const n = Number(text);
      return Number.isInteger(n) && n >= min && n <= max && /^-?\d+$/.test(text) ? n : undefined;
    },
    render: plain,
    fallback: 0,
  };
}

/** int8 and oid as Connect's int64. */
export const INT64: Codec = {
  type: '"type":"int64"',
  logical: "",
  // The digits themselves: int8 passes 2^53, and JsonConverter writes a Java long exactly.
  value: (text) => (/^-?\d{1,19}$/.test(text) && BigInt.asIntN(64, BigInt(text)) === BigInt(text) ? text : undefined),
  render: plain,
  fallback: 0,
};

/** float4 / float8 as Connect's float32 / float64. */
export function float(type: "float" | "double"): Codec {
  const round = type === "float" ? Math.fround : (x: number) => x;
  return {
    type: `"type":"${type}"`,
    logical: "",
    value: (text) => {
      const x = text === "NaN" ? NaN : text === "Infinity" ? Infinity : text === "-Infinity" ? -Infinity : Number(text);
      return Number.isNaN(x) && text !== "NaN" ? undefined : round(x);
    },
    render: (value) => (type === "float" ? javaFloat(value as number) : javaDouble(value as number)),
    fallback: 0,
  };
}

/** A text type as a Connect string, with an optional logical name. */
export function stringCodec(logical = ""): Codec {
  return {
    type: '"type":"string"',
    logical,
    value: (text) => text,
    render: asString,
    fallback: "",
    toast: PLACEHOLDER,
  };
}

/**
 * char(n): blank-padded to n characters, as bpcharout sends it and Debezium passes it on; the snapshot's
 * `::text` cast trims the blanks, so they are put back.
 */
export function blankPadded(length: number): Codec {
  return {
    ...stringCodec(),
    value: (text) => {
      const missing = length - (/^[\x20-\x7e]*$/.test(text) ? text.length : [...text].length);
      return missing > 0 ? text + " ".repeat(missing) : text;
    },
  };
}

/** bool as Connect's boolean. */
export const BOOLEAN: Codec = {
  type: '"type":"boolean"',
  logical: "",
  // pgoutput sends boolout's t/f; the snapshot's bool::text cast gives true/false.
  value: (text) => (text === "t" || text === "true" ? true : text === "f" || text === "false" ? false : undefined),
  render: plain,
  fallback: false,
};

/** The bytes of bytea's hex output (`\\x0102`) as a binary string (one char a byte); undefined for other text. */
function byteaBinary(text: string): string | undefined {
  if (!/^\\x(?:[0-9a-fA-F]{2})*$/.test(text)) return undefined;
  let binary = "";
  for (let i = 2; i < text.length; i += 2) binary += String.fromCharCode(parseInt(text.slice(i, i + 2), 16));
  return binary;
}

/** The UTF-8 bytes of a text as a binary string (one char a byte). */
function utf8Binary(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

const HEX = (binary: string) => [...binary].map((c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
const URL_SAFE = (base64: string) => base64.replaceAll("+", "-").replaceAll("/", "_");

/**
 * bytea (`fromText` false) or a type Debezium knows nothing of with include.unknown.datatypes (`fromText`: its text's
 * UTF-8 bytes, AbstractColumnValue.asDefault) under binary.handling.mode: Connect bytes (JsonConverter writes base64),
 * or a string of base64 (java.util.Base64), URL-safe base64 (with padding) or lower-case hex (HexConverter). An
 * unchanged TOASTed value: the placeholder's bytes, its text in hex mode, null in the base64 modes, where
 * convertBinaryToBase64 takes the marker for an unexpected value.
 */
export function binaryCodec(mode: ValueOptions["binary"], fromText = false): Codec {
  const read = fromText ? utf8Binary : byteaBinary;
  const encode = mode === "hex" ? HEX : mode === "base64-url-safe" ? (b: string) => URL_SAFE(btoa(b)) : btoa;
  return {
    type: mode === "bytes" ? '"type":"bytes"' : '"type":"string"',
    logical: "",
    value: (text) => {
      const binary = read(text);
      return binary === undefined ? undefined : encode(binary);
    },
    render: asString,
    fallback: "",
    toast: mode === "bytes" ? PLACEHOLDER_BASE64 : mode === "hex" ? PLACEHOLDER : null,
  };
}

/**
 * The unscaled value of a decimal text at a scale, as base64 of its big-endian two's complement
 * (Java's BigInteger.toByteArray, which Connect's Decimal and Debezium's VariableScaleDecimal write).
 */
export function unscaledBase64(unscaled: bigint): string {
  let hex = (unscaled < 0n ? -unscaled - 1n : unscaled).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`; // a sign byte keeps the value's sign
  let binary = "";
  for (let i = 0; i < hex.length; i += 2) {
    const byte = parseInt(hex.slice(i, i + 2), 16);
    binary += String.fromCharCode(unscaled < 0n ? 255 - byte : byte);
  }
  return btoa(binary);
}

const DECIMAL_TEXT = /^(-?)(\d+)(?:\.(\d+))?$/;

/**
 * NaN and the infinities have no Decimal form: SpecialValueDecimal.fromLogical throws in precise mode, and
 * TableSchemaBuilder's default event.converting.failure.handling.mode (warn) leaves the field null. A codec
 * returns `null` for them: the encoder writes the column's NULL, or stops when the column is required.
 */
const SPECIAL_NUMERIC = new Set(["NaN", "Infinity", "-Infinity"]);

const PRECISE_REFUSAL = "decimal.handling.mode=precise has no form for NaN or infinity (Debezium leaves it null); " +
  "set --decimal-handling-mode double or string, or let the column be null";

/** Connect's Decimal at the column's scale (SpecialValueDecimal.builder, PostgresValueConverter.convertDecimal). */
function decimal(precision: number, scale: number): Codec {
  return {
    type: '"type":"bytes"',
    logical: `${named("org.apache.kafka.connect.data.Decimal")},"parameters":{"scale":"${scale}",` +
      `"connect.decimal.precision":"${precision}"}`,
    value: (text) => {
      if (SPECIAL_NUMERIC.has(text)) return null;
      const m = DECIMAL_TEXT.exec(text);
      const fraction = (m?.[3] ?? "").replace(/0+$/, "");
      if (!m || fraction.length > scale) return undefined;
      return BigInt(`${m[1]}${m[2]}${fraction.padEnd(scale, "0")}`);
    },
    render: (value) => `"${unscaledBase64(value as bigint)}"`,
    fallback: 0n,
    refusal: PRECISE_REFUSAL,
  };
}

/** An unconstrained numeric: Debezium's VariableScaleDecimal struct, trailing zeros stripped. */
const VARIABLE_DECIMAL: Codec = {
  type: '"type":"struct","fields":[{"type":"int32","optional":false,"field":"scale"},' +
    '{"type":"bytes","optional":false,"field":"value"}]',
  logical: `${named("io.debezium.data.VariableScaleDecimal")},"doc":"Variable scaled decimal"`,
  value: (text) => {
    if (SPECIAL_NUMERIC.has(text)) return null;
    const m = DECIMAL_TEXT.exec(text);
    if (!m) return undefined;
    const fraction = (m[3] ?? "").replace(/0+$/, "");
    // BigDecimal.stripTrailingZeros, then setScale(0) when the scale went negative: 1200 stays 1200.
    const unscaled = BigInt(`${m[1]}${m[2]}${fraction}`);
    return { scale: fraction.length, unscaled };
  },
  render: (value) => {
    const { scale, unscaled } = value as { scale: number; unscaled: bigint };
    return `{"scale":${scale},"value":"${unscaledBase64(unscaled)}"}`;
  },
  fallback: { scale: 0, unscaled: 0n },
  refusal: PRECISE_REFUSAL,
};

/** SpecialValueDecimal's names of numeric's special values, as decimal.handling.mode=string writes them. */
const SPECIAL_NAMES: Record<string, string> = {
  NaN: "NAN",
  Infinity: "POSITIVE_INFINITY",
  "-Infinity": "NEGATIVE_INFINITY",
};

/** Precision and scale of a numeric typmod (pgjdbc TypeInfoCache.getPrecision/getScale). */
export function numericTypmod(typmod: number): { precision: number; scale: number } | null {
  return typmod < 0 ? null : { precision: ((typmod - 4) >> 16) & 0xffff, scale: (typmod - 4) & 0xffff };
}

/**
 * numeric under decimal.handling.mode (SpecialValueDecimal.builder/fromLogical): precise as Decimal (or
 * VariableScaleDecimal without a typmod), double as float64 (NaN and the infinities too), string as
 * BigDecimal.toPlainString at the column's scale (NAN, POSITIVE_INFINITY, NEGATIVE_INFINITY for the special values).
 */
export function numericCodec(typmod: number, mode: ValueOptions["decimal"]): Codec {
  const numeric = numericTypmod(typmod);
  if (mode === "precise") return numeric ? decimal(numeric.precision, numeric.scale) : VARIABLE_DECIMAL;
  if (mode === "double") {
    return {
      ...float("double"),
      value: (text) => (SPECIAL_NUMERIC.has(text) || DECIMAL_TEXT.test(text) ? Number(text) : undefined),
    };
  }
  return {
    ...stringCodec(),
    value: (text) => {
      if (SPECIAL_NUMERIC.has(text)) return SPECIAL_NAMES[text];
      const m = DECIMAL_TEXT.exec(text);
      if (!m || !numeric) return m ? text : undefined;
      const fraction = (m[3] ?? "").padEnd(numeric.scale, "0");
      return fraction.length > numeric.scale ? undefined : `${m[1]}${m[2]}${fraction ? `.${fraction}` : ""}`;
    },
    fallback: "0",
    toast: undefined,
  };
}

/**
 * The decimal of a money text as PostgresMoney.parse reads lc_monetary's output ("$1,234.56", "-$0.50",
 * "($1.00)"): sign, currency symbol and group separators dropped; undefined for other text.
 */
function moneyDecimal(text: string): { negative: boolean; digits: string; fraction: string } | undefined {
  const negative = text[0] === "(" || text[0] === "-";
  let rest = text.replace(/^[-(]/, "").replace(/\)$/, "");
  if (rest && !/[\d.]/.test(rest[0])) rest = rest.slice(1);
  const m = /^(\d*)(?:\.(\d*))?$/.exec(rest.replaceAll(",", ""));
  return m && (m[1] || m[2]) ? { negative, digits: m[1] || "0", fraction: m[2] ?? "" } : undefined;
}

/**
 * money under decimal.handling.mode (PostgresValueConverter.moneySchema/convertMoney): precise as Decimal at
 * money.fraction.digits (HALF_UP), double as float64, string as the parsed decimal's plain text.
 */
export function moneyCodec(mode: ValueOptions["decimal"], digits: number): Codec {
  const zero = digits > 0 ? `0.${"0".repeat(digits)}` : "0";
  if (mode === "string" || mode === "double") {
    const base = mode === "string" ? { ...stringCodec(), toast: undefined } : float("double");
    return {
      ...base,
      value: (text) => {
        const d = moneyDecimal(text);
        if (!d) return undefined;
        const plainText = `${d.negative ? "-" : ""}${d.digits}${d.fraction ? `.${d.fraction}` : ""}`;
        return mode === "string" ? plainText : Number(plainText);
      },
      fallback: mode === "string" ? zero : 0,
    };
  }
  return {
    type: '"type":"bytes"',
    logical: `${named("org.apache.kafka.connect.data.Decimal")},"parameters":{"scale":"${digits}"}`,
    value: (text) => {
      const d = moneyDecimal(text);
      if (!d) return undefined;
      let unscaled = BigInt(d.digits + d.fraction.slice(0, digits).padEnd(digits, "0"));
      if (Number(d.fraction[digits] ?? 0) >= 5) unscaled += 1n; // HALF_UP on the magnitude
      return d.negative ? -unscaled : unscaled;
    },
    render: (value) => `"${unscaledBase64(value as bigint)}"`,
    fallback: 0n,
  };
}

/** The schema name of time.precision.mode=connect's types, Kafka Connect's own. */
const CONNECT = (type: string) => named(`org.apache.kafka.connect.data.${type}`);

/**
 * date: io.debezium.time.Date (Kafka Connect's Date with time.precision.mode=connect), days since 1970 as a Java
 * int; infinity as PostgresValueConverter's far dates.
 */
export function dateCodec(mode: ValueOptions["time"]): Codec {
  return { ...DATE_CODEC, logical: mode === "connect" ? CONNECT("Date") : DATE_CODEC.logical };
}

const DATE_CODEC: Codec = {
  type: '"type":"int32"',
  logical: named("io.debezium.time.Date"),
  value: (text) => {
    // POSITIVE/NEGATIVE_INFINITY_LOCAL_DATE are -5877611-06-21 / -22; Date.toEpochDay casts to int.
    if (text === "infinity") return epochDay(-5_877_611, 6, 21) | 0;
    if (text === "-infinity") return epochDay(-5_877_611, 6, 22) | 0;
    const m = DATE.exec(text);
    return m ? epochDay(properYear(m[1], m[4]), Number(m[2]), Number(m[3])) | 0 : undefined;
  },
  render: plain,
  fallback: 0,
};

/** Microseconds past midnight of a time text (Strings.asDuration; 24:00:00 allowed). */
function timeMicros(text: string): number | undefined {
  const m = TIME.exec(text);
  if (!m || m[5]) return undefined;
  return (Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * 1_000_000 + micros(m[4]);
}

/**
 * time(p) under time.precision.mode (TemporalPrecisionMode): adaptive as io.debezium.time.Time (millis, int32) for
 * p <= 3 and MicroTime (int64) above; adaptive_time_microseconds as MicroTime; connect as Kafka Connect's Time
 * (millis).
 */
export function timeCodec(precision: number, mode: ValueOptions["time"] = "adaptive"): Codec {
  const millis = mode === "connect" || (mode === "adaptive" && precision <= 3);
  return {
    type: millis ? '"type":"int32"' : '"type":"int64"',
    logical: mode === "connect"
      ? CONNECT("Time")
      : named(millis ? "io.debezium.time.Time" : "io.debezium.time.MicroTime"),
    value: (text) => {
      const us = timeMicros(text);
      return us === undefined ? undefined : millis ? Math.trunc(us / 1000) : us;
    },
    render: plain,
    fallback: 0,
  };
}

/**
 * timestamp(p): io.debezium.time.Timestamp (millis) for p <= 3, MicroTimestamp above, Kafka Connect's Timestamp
 * (millis) with time.precision.mode=connect; infinity as pgjdbc's.
 */
export function timestampCodec(precision: number, mode: ValueOptions["time"] = "adaptive"): Codec {
  const millis = mode === "connect" || precision <= 3;
  return {
    type: '"type":"int64"',
    logical: mode === "connect"
      ? CONNECT("Timestamp")
      : named(millis ? "io.debezium.time.Timestamp" : "io.debezium.time.MicroTimestamp"),
    value: (text) => {
      let us: number | bigint;
      if (text === "infinity") us = TIMESTAMP_INFINITY_US;
      else if (text === "-infinity") us = TIMESTAMP_NEG_INFINITY_US;
      else {
        const t = parseTimestamp(text, false);
        if (!t) return undefined;
        us = epochMicros(t.seconds, t.micro);
      }
      if (!millis) return us;
      if (typeof us === "number") return Math.floor(us / 1000);
      return us < 0n && us % 1000n !== 0n ? us / 1000n - 1n : us / 1000n; // Instant.toEpochMilli floors
    },
    render: plain,
    fallback: 0,
  };
}

/** Fraction digits as java.time's appendFraction(NANO_OF_SECOND, min, max, true) prints them. */
function fractionText(micro: number, width: number): string {
  const digits = String(micro * 1000).padStart(9, "0");
  if (width > 0) return `.${digits.slice(0, width)}`;
  const trimmed = digits.replace(/0+$/, "");
  return trimmed ? `.${trimmed}` : "";
}

/**
 * A timestamptz text already in UTC with a four-digit year AD, as the capture's sessions (TimeZone UTC) get nearly every
 * value: "2025-07-03 10:11:12.5+00" -> "2025-07-03T10:11:12.500000Z" by moving characters, without the calendar
 * arithmetic of the general case; undefined for any other text.
 */
function utcTimestamp(text: string, width: number): string | undefined {
  const n = text.length;
  if (n < 22 || n > 29 || text[4] !== "-" || text[10] !== " " || !text.endsWith("+00")) return undefined;
  if (n > 22 && text[19] !== ".") return undefined;
  const micros = n > 22 ? text.slice(20, n - 3).padEnd(6, "0") : "000000";
  const fraction = width > 0
    ? `.${micros.slice(0, width)}`
    : micros === "000000"
    ? ""
    : `.${micros.replace(/0+$/, "")}`;
  return `${text.slice(0, 10)}T${text.slice(11, 19)}${fraction}Z`;
}

/**
 * timestamptz(p): io.debezium.time.ZonedTimestamp, the instant in UTC with p fraction digits (6 without
 * a typmod; p = 0 prints only what is non-zero, ISO_OFFSET_DATE_TIME); `infinity` and `-infinity` as
 * themselves (PostgresValueConverter.convertTimestampWithZone, ZonedTimestamp.toIsoString).
 */
export function zonedTimestampCodec(width: number): Codec {
  return {
    type: '"type":"string"',
    logical: named("io.debezium.time.ZonedTimestamp"),
    value: (text) => {
      const utc = utcTimestamp(text, width);
      if (utc !== undefined) return utc;
      if (text === "infinity" || text === "-infinity") return text;
      const t = parseTimestamp(text, true);
      if (!t) return undefined;
      const days = Math.floor(t.seconds / 86_400);
      const clock = t.seconds - days * 86_400;
      const { year, month, day } = civilDate(days);
      return `${isoYear(year)}-${pad2(month)}-${pad2(day)}T${pad2(Math.floor(clock / 3600))}:` +
        `${pad2(Math.floor(clock / 60) % 60)}:${pad2(clock % 60)}${fractionText(t.micro, width)}Z`;
    },
    render: asString,
    fallback: "1970-01-01T00:00:00Z",
  };
}

/** timetz: io.debezium.time.ZonedTime, the time shifted to UTC, ISO_OFFSET_TIME (shortest fraction). */
export const ZONED_TIME: Codec = {
  type: '"type":"string"',
  logical: named("io.debezium.time.ZonedTime"),
  value: (text) => {
    const m = TIME.exec(text);
    if (!m || Number(m[1]) > 23) return undefined; // OffsetTime cannot hold 24:00:00
    const local = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
    const utc = (((local - offsetSeconds(m[5], m[6], m[7], m[8])) % 86_400) + 86_400) % 86_400;
    return `${pad2(Math.floor(utc / 3600))}:${pad2(Math.floor(utc / 60) % 60)}:${pad2(utc % 60)}` +
      `${fractionText(micros(m[4]), 0)}Z`;
  },
  render: asString,
  fallback: "00:00:00Z",
};

/** uuid as io.debezium.data.Uuid. */
export const UUID_CODEC: Codec = {
  ...stringCodec(named("io.debezium.data.Uuid")),
  value: (text) => (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text) ? text : undefined),
};

/** An interval's fields as pgjdbc's PGInterval.setValue reads PostgreSQL's output ("1 year 2 mons -3 days +04:05:06.5"). */
function intervalFields(text: string): number[] | undefined {
  const fields = [0, 0, 0, 0, 0, 0]; // years, months, days, hours, minutes, seconds
  const tokens = text.replaceAll("+", " ").toLowerCase().split(/\s+/).filter(Boolean);
  let pending: string | null = null;
  for (const [i, token] of tokens.entries()) {
    if (i % 2 === 0) {
      const clock = /^(-?)(\d+):(\d\d)(?::(\d+(?:\.\d+)?))?$/.exec(token);
      if (!clock) {
        pending = token;
        continue;
      }
      const sign = clock[1] ? -1 : 1;
      fields[3] = sign * Number(clock[2]);
      fields[4] = sign * Number(clock[3]);
      fields[5] = sign * Number(clock[4] ?? 0);
      pending = null;
    } else {
      const unit = ["year", "mon", "day", "hour", "min", "sec"].findIndex((u) => token.startsWith(u));
      const n = Number(pending ?? 0);
      if (unit < 0) continue;
      if (!Number.isFinite(n) || (unit < 5 && !Number.isInteger(n))) return undefined;
      fields[unit] = n;
    }
  }
  return fields;
}

/**
 * interval: io.debezium.time.MicroDuration (interval.handling.mode=numeric), MicroDuration.durationMicros in
 * doubles with 365.25 / 12 days a month, the seconds rounded to microseconds as PGInterval.setSeconds does.
 */
const MICRO_DURATION: Codec = {
  type: '"type":"int64"',
  logical: named("io.debezium.time.MicroDuration"),
  value: (text) => {
    const f = intervalFields(text);
    if (!f) return undefined;
    const seconds = intervalSeconds(f[5]);
    const days = (f[0] * 12 + f[1]) * (365.25 / 12) + f[2];
    const us = Math.trunc(((((days * 24 + f[3]) * 60) + f[4]) * 60 + seconds) * 1e6);
    if (Number.isSafeInteger(us)) return us;
    const max = 2n ** 63n - 1n; // Java's (long) cast saturates
    const big = BigInt(us);
    return big > max ? max : big < -max - 1n ? -max - 1n : big;
  },
  render: plain,
  fallback: 0,
};

/** A double as BigDecimal.valueOf(x).stripTrailingZeros().toPlainString() writes it. */
function plainDouble(x: number): string {
  const m = /^(-?)(\d+)\.(\d+)(?:E(-?\d+))?$/.exec(javaDouble(x));
  if (!m) return String(x);
  let digits = m[2] + m[3];
  let point = m[2].length + Number(m[4] ?? 0);
  while (digits.length > 1 && digits[0] === "0") [digits, point] = [digits.slice(1), point - 1];
  digits = digits.replace(/0+$/, "");
  if (!digits) return "0";
  const body = point <= 0
    ? `0.${"0".repeat(-point)}${digits}`
    : digits.length <= point
    ? digits.padEnd(point, "0")
    : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return m[1] + body;
}

/** The seconds of an interval as PGInterval.getSeconds gives them: rounded to microseconds (setSeconds). */
function intervalSeconds(seconds: number): number {
  const totalMicros = Math.round(seconds * 1e6);
  return Math.trunc(totalMicros / 1e6) + (totalMicros % 1e6) / 1e6;
}

/** interval.handling.mode=string: io.debezium.time.Interval, Interval.toIsoString of PGInterval's fields. */
const ISO_INTERVAL: Codec = {
  ...stringCodec(named("io.debezium.time.Interval")),
  value: (text) => {
    const f = intervalFields(text);
    if (!f) return undefined;
    return `P${f[0]}Y${f[1]}M${f[2]}DT${f[3]}H${f[4]}M${plainDouble(intervalSeconds(f[5]))}S`;
  },
  fallback: "P0Y0M0DT0H0M0S",
  toast: undefined,
};

/** interval under interval.handling.mode. */
export function intervalCodec(mode: ValueOptions["interval"]): Codec {
  return mode === "string" ? ISO_INTERVAL : MICRO_DURATION;
}

// ---- Column defaults, as PostgresDefaultValueConverter reads them ----------------------------------

const LITERAL = /'(.*?)'/;
const FUNCTION_CALL = /^[(]?[A-Za-z0-9_.]+\((?:.+(?:, ?.+)*)?\)/;
const CURRENT_DATE_TIMES = new Set([
  "current_timestamp",
  "current_time",
  "current_date",
  "localtime",
  "localtimestamp",
]);
const TRIMMED = new Set([
  "bool",
  "numeric",
  "float4",
  "float8",
  "int2",
  "int4",
  "int8",
  "uuid",
  "date",
  "time",
  "timestamp",
]);

/** A default expression's literal, or the placeholder Debezium reports for a function call (extractDefault). */
function extractDefault(expression: string, generated: string): string | null {
  if (FUNCTION_CALL.test(expression) || CURRENT_DATE_TIMES.has(expression.toLowerCase())) return generated;
  if (!expression.includes("'")) return expression.startsWith("NULL::") ? null : expression;
  return LITERAL.exec(expression)![1];
}

/** Per pg type name: the placeholder of a generated default and how the literal becomes the codec's text. */
const DEFAULT_MAPPERS: Record<string, [placeholder: string, toText: (literal: string) => string]> = {
  bool: ["false", (v) => (v.toLowerCase() === "true" ? "t" : "f")], // Boolean.parseBoolean
  bpchar: ["", (v) => v],
  varchar: ["", (v) => v],
  text: ["", (v) => v],
  json: ["{}", (v) => v],
  jsonb: ["{}", (v) => v],
  xml: ["", (v) => v],
  numeric: ["0.0", (v) => v],
  float4: ["0.0", (v) => v],
  float8: ["0.0", (v) => v],
  int2: ["0", (v) => v],
  int4: ["0", (v) => v],
  int8: ["0", (v) => v],
  uuid: ["00000000-0000-0000-0000-000000000000", (v) => v.toLowerCase()],
  date: ["1970-01-01", (v) => v],
  time: ["00:00", (v) => (/^\d\d:\d\d$/.test(v) ? `${v}:00` : v)],
  timestamp: ["1970-01-01", (v) => (v.length === 10 ? `${v} 00:00:00` : v)],
  interval: ["epoch", (v) => v],
  // TimestampUtils.toOffsetDateTime reads a text without offset in the JVM's zone, assumed UTC here.
  timestamptz: [
    "1970-01-01",
    (v) => (v.length === 10 ? `${v} 00:00:00+00` : /[+-]\d\d(:\d\d)*$/.test(v.slice(19)) ? v : `${v}+00`),
  ],
};

/**
 * The default Debezium reports for a column default expression (pg_get_expr of pg_attrdef) as the text its
 * codec reads (the encoder makes it the codec's logical value), or `undefined` when it reports none: no mapper
 * for the type (bytea, arrays, domains...), `NULL::type`, or an expression it cannot parse. A function call such
 * as `now()` or `nextval(...)` gives the type's placeholder. `enumType`: the column's type is an enum.
 */
export function debeziumDefault(declaredTypeName: string, expression: string, enumType = false): string | undefined {
  if (enumType) {
    // extractEnumDefault: 'label'::type
    const m = /^'(.*)'::[^']+$/.exec(expression);
    return m ? m[1] : undefined;
  }
  const mapper = DEFAULT_MAPPERS[declaredTypeName];
  if (!mapper) return undefined;
  const trimmed = TRIMMED.has(declaredTypeName) ? expression.trim() : expression;
  const literal = extractDefault(trimmed, mapper[0]);
  return literal === null ? undefined : mapper[1](literal);
}
