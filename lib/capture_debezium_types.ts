/**
 * Which codec a column's type gets, as PostgresValueConverter.schemaBuilder/converter choose them
 * under Debezium's value options, and the codecs of the types beyond the built-in scalars: one-
 * dimensional arrays, money's and bit's neighbours, point, the extension types (hstore, citext,
 * ltree, PostGIS geometry/geography, pgvector's vector/halfvec/sparsevec) and unknown types as
 * binary (include.unknown.datatypes). Sources named are Debezium 3.6.1.Final classes.
 * @module
 */
import {
  asString,
  binaryCodec,
  blankPadded,
  BOOLEAN,
  type Codec,
  dateCodec,
  float,
  INT64,
  integer,
  intervalCodec,
  javaDouble,
  javaFloat,
  jsonString,
  moneyCodec,
  named,
  numericCodec,
  numericTypmod,
  PLACEHOLDER,
  stringCodec,
  timeCodec,
  timestampCodec,
  UUID_CODEC,
  type ValueOptions,
  ZONED_TIME,
  zonedTimestampCodec,
} from "./capture_debezium_values.ts";

/** What a column type becomes: a codec, a column Debezium leaves out, or a type this encoder refuses. */
export type CodecLookup = { codec: Codec } | { skipped: true } | { unsupported: string };

/** The type facts a codec depends on. */
export interface TypeFacts {
  /** pg_type oid of the column's base type. */
  typeOid: number;
  /** pg_type name of the base type. */
  typeName: string;
  /** atttypmod, -1 when none. */
  typmod: number;
  /** The labels of an enum type, in sort order. */
  enumValues?: string[];
  /** An array type's element type (pg_type.typelem); a domain element stays a domain (Debezium does not resolve it). */
  element?: ElementFacts;
}

/** An array's element type. */
export interface ElementFacts {
  /** The element type's oid. */
  typeOid: number;
  /** The element type's name. */
  typeName: string;
  /** Whether the element type is a domain. */
  domain: boolean;
  /** The labels of an enum element type, in sort order. */
  enumValues?: string[];
}

// Type oids from pg_type.dat: the types Debezium writes as plain strings (convertString).
const STRING_OIDS = new Set([
  25, // text
  1043, // varchar
  19, // name
  18, // "char"
  650, // cidr
  869, // inet
  829, // macaddr
  774, // macaddr8
  3904, // int4range
  3906, // numrange
  3908, // tsrange
  3910, // tstzrange
  3912, // daterange
  3926, // int8range
]);

/** Seconds precision of a time/timestamp typmod: 6 without one (TypeInfoCache.getScale). */
const timePrecision = (typmod: number) => (typmod < 0 ? 6 : typmod);

/** The built-in scalar types by oid, under the options. */
const BUILTIN: Record<number, (typmod: number, o: ValueOptions) => Codec> = {
  16: () => BOOLEAN,
  17: (_, o) => binaryCodec(o.binary),
  20: () => INT64,
  21: () => integer("int16", -32768, 32767),
  23: () => integer("int32", -2147483648, 2147483647),
  26: () => INT64, // oid
  114: () => stringCodec(named("io.debezium.data.Json")),
  142: () => stringCodec(named("io.debezium.data.Xml")),
  600: () => POINT,
  700: () => float("float"),
  701: () => float("double"),
  790: (_, o) => moneyCodec(o.decimal, o.moneyFractionDigits),
  1082: (_, o) => dateCodec(o.time),
  1083: (typmod, o) => timeCodec(timePrecision(typmod), o.time),
  1114: (typmod, o) => timestampCodec(timePrecision(typmod), o.time),
  1184: (typmod) => zonedTimestampCodec(timePrecision(typmod)),
  1186: (_, o) => intervalCodec(o.interval),
  1266: () => ZONED_TIME,
  1560: (typmod) => bitsCodec(typmod), // bit(n): typmod n
  1562: (typmod) => bitsCodec(typmod < 0 ? 2147483647 : typmod), // varbit: unbounded as pgjdbc's unknown length
  1700: (typmod, o) => numericCodec(typmod, o.decimal),
  2950: () => UUID_CODEC,
  3614: () => stringCodec(named("io.debezium.data.Tsvector")),
  3802: () => stringCodec(named("io.debezium.data.Json")),
};

/** Extension types, which Debezium's TypeRegistry finds by name. */
const EXTENSION: Record<string, (o: ValueOptions) => Codec> = {
  citext: () => stringCodec(),
  isbn: () => stringCodec(),
  ltree: () => stringCodec(named("io.debezium.data.Ltree")),
  hstore: (o) => hstoreCodec(o.hstore),
  geometry: () => geometryCodec("Geometry"),
  geography: () => geometryCodec("Geography"),
  vector: () => vectorCodec("DoubleVector"),
  halfvec: () => vectorCodec("FloatVector"),
  sparsevec: () => SPARSE_VECTOR,
};

/** The codec of a column's type under `options`, as PostgresValueConverter.schemaBuilder/converter choose them. */
export function codecFor(facts: TypeFacts, options: ValueOptions): CodecLookup {
  const { typeOid, typmod } = facts;
  if (STRING_OIDS.has(typeOid)) return { codec: stringCodec() };
  if (typeOid === 1042) return { codec: typmod > 4 ? blankPadded(typmod - 4) : stringCodec() };
  const numeric = typeOid === 1700 ? numericTypmod(typmod) : null;
  if (numeric && numeric.scale > 1000) return { unsupported: `numeric with a negative scale (typmod ${typmod})` };
  const codec = BUILTIN[typeOid]?.(typmod, options) ?? EXTENSION[facts.typeName]?.(options);
  if (codec) return { codec };
  if (facts.enumValues) return { codec: enumCodec(facts.enumValues) };
  if (facts.element) return arrayLookup(facts.element, typmod, options);
  // Every other type is JDBC's OTHER: Debezium leaves the column out, or writes its text as binary.
  return options.includeUnknown ? { codec: binaryCodec(options.binary, true) } : { skipped: true };
}

function enumCodec(labels: string[]): Codec {
  return stringCodec(`${named("io.debezium.data.Enum")},"parameters":{"allowed":${jsonString(labels.join(","))}}`);
}

// ---- Arrays ------------------------------------------------------------------------------------------

/** Arrays Debezium has no schema for (PostgresValueConverter.schemaBuilder returns null): left out always. */
const ARRAYS_LEFT_OUT = new Set(["money", "name", "interval", "varbit", "xml", "point", "refcursor"]);

/**
 * Element types whose arrays schemaBuilder lists with optional items; any other element's schema is taken
 * unchanged (arrayElementSchema), required.
 */
const OPTIONAL_ITEMS = new Set([
  ..."int2 int4 int8 oid char varchar text bpchar inet cidr macaddr macaddr8 tsrange tstzrange daterange".split(" "),
  ..."int4range numrange int8range numeric float4 float8 bool date uuid json jsonb time timetz timestamp".split(" "),
  ..."timestamptz bytea geometry geography citext hstore ltree".split(" "),
]);

/**
 * What the placeholder of an unchanged TOASTed array is (UnchangedToastedReplicationMessageColumn,
 * UnchangedToastedPlaceholder), by element type: a list of the placeholder text, of its bytes, of its bytes as
 * numbers, or of the name-based UUID of its bytes. Arrays of other elements get the placeholder text where a list
 * belongs, which Kafka Connect refuses: Debezium's warn mode leaves them null (the encoder's rule without `toast`).
 */
function arrayToast(element: string, options: ValueOptions): unknown[] | null | undefined {
  const bytes = [...PLACEHOLDER].map((c) => c.charCodeAt(0));
  if (["text", "varchar", "bpchar", "json", "jsonb"].includes(element)) return [PLACEHOLDER];
  if (element === "bytea" && options.binary === "bytes") return [btoa(PLACEHOLDER)];
  // Kafka Connect's Date (time.precision.mode=connect) takes no number: Debezium writes null there.
  if (element === "date" && options.time === "connect") return null;
  if (element === "int4" || element === "date" || element === "int8") return bytes;
  // UUID.nameUUIDFromBytes("__debezium_unavailable_value"): MD5-based, version 3.
  if (element === "uuid") return ["b68a35a7-17ad-35b3-af2a-ae46edb4545a"];
  return undefined;
}

/**
 * An element's codec: the array column's typmod applies to it, as Debezium gives the element column the array's
 * length and scale (createArrayConverter). pgjdbc reads time elements as java.sql.Time (milliseconds; timetz ones
 * whole seconds), and a date element `infinity` as its far java.sql.Date, whose day count overflows Java's int.
 */
function elementLookup(element: ElementFacts, typmod: number, options: ValueOptions): Codec | undefined {
  const { typeOid, typeName } = element;
  if (element.domain) return undefined;
  if (typeOid === 1266) return { ...ZONED_TIME, value: (t) => ZONED_TIME.value(t.replace(/\.\d+/, "")) };
  if (element.enumValues) return enumCodec(element.enumValues);
  const found = codecFor({ typeOid, typeName, typmod }, { ...options, includeUnknown: false });
  if (!("codec" in found)) return undefined;
  const { codec } = found;
  if (typeOid === 1083) return { ...codec, value: (t) => codec.value(t.replace(/(\.\d{3})\d+/, "$1")) };
  if (typeOid !== 1082) return codec;
  return {
    ...codec,
    value: (t) => (t === "infinity" ? -622_191_234 : t === "-infinity" ? -625_821_272 : codec.value(t)),
  };
}

function arrayLookup(element: ElementFacts, typmod: number, options: ValueOptions): CodecLookup {
  if (ARRAYS_LEFT_OUT.has(element.typeName)) return { skipped: true };
  if (element.typeName === "bit") return { codec: BIT_ARRAY(typmod) };
  const codec = elementLookup(element, typmod, options);
  const optionalItems = OPTIONAL_ITEMS.has(element.typeName) && !element.domain;
  if (codec) return { codec: arrayCodec(codec, optionalItems, arrayToast(element.typeName, options)) };
  // An element type Debezium has no schema for: an array of binary with include.unknown.datatypes (its items
  // not optional, as schemaBuilder returns the element's builder unchanged), else the column is left out. For a
  // domain element pgjdbc's array has no elements Debezium reads: it writes null.
  if (!options.includeUnknown) return { skipped: true };
  const binary = arrayCodec(binaryCodec(options.binary, true), false);
  return { codec: element.domain ? { ...binary, value: () => null, refusal: DOMAIN_ARRAY_REFUSAL } : binary };
}

const DOMAIN_ARRAY_REFUSAL = "Debezium writes no value for an array of a domain; let the column be null";

/**
 * bit(n)[]: schemaBuilder gives the element's schema (boolean or Bits), not an array, and the list the converter makes
 * does not fit it: warn mode leaves every value null.
 */
const BIT_ARRAY = (typmod: number): Codec => ({
  ...bitsCodec(typmod < 0 ? 1 : typmod),
  value: () => null,
  refusal: "Debezium's schema of bit[] is not an array and it writes no value there; let the column be null",
});

/** array_out's text: the dimensions' bounds when a lower bound is not 1, then the elements in braces. */
const ARRAY_TEXT = /^(?:\[-?\d+:-?\d+\](?:\[-?\d+:-?\d+\])*=)?\{(.*)\}$/s;

/** The number of top-level sub-arrays of a multi-dimensional array's text; undefined for other text. */
function subArrays(text: string): number | undefined {
  const body = ARRAY_TEXT.exec(text)?.[1];
  if (!body?.startsWith("{")) return undefined;
  let [depth, count, quoted] = [0, 0, false];
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === "{" && depth++ === 0) count++;
    else if (c === "}") depth--;
  }
  return count;
}

/** The elements of a one-dimensional array's text (array_out): null for NULL; undefined for other text. */
export function arrayElements(text: string): (string | null)[] | undefined {
  const body = ARRAY_TEXT.exec(text)?.[1];
  if (body === undefined) return undefined;
  if (body === "") return [];
  const elements: (string | null)[] = [];
  let i = 0;
  while (i <= body.length) {
    if (body[i] === "{") return undefined; // more than one dimension
    if (body[i] === '"') {
      let value = "";
      for (i++; i < body.length && body[i] !== '"'; i++) value += body[i] === "\\" ? body[++i] : body[i];
      elements.push(value);
      i++;
    } else {
      const end = body.indexOf(",", i);
      const raw = body.slice(i, end < 0 ? body.length : end);
      elements.push(raw === "NULL" ? null : raw);
      i += raw.length;
    }
    if (i < body.length && body[i] !== ",") return undefined;
    i++;
  }
  return elements;
}

/**
 * An array as Connect's array of its element's schema (optional items, but for enums), converted element by
 * element (convertArray); an empty array when Debezium's fallback is needed. pgjdbc hands a multi-dimensional
 * array's sub-arrays to the element converter, which fails on them: a null per sub-array.
 */
function arrayCodec(element: Codec, optionalItems: boolean, toast?: unknown[] | null): Codec {
  return {
    type: `"type":"array","items":{${element.type},"optional":${optionalItems}${element.logical}}`,
    logical: "",
    value: (text) => {
      const texts = arrayElements(text);
      if (!texts) {
        const count = subArrays(text);
        return count === undefined ? undefined : Array(count).fill(null);
      }
      const values = texts.map((t) => (t === null ? null : element.value(t)));
      return values.some((v) => v === undefined) || values.some((v, i) => v === null && texts[i] !== null)
        ? undefined
        : values;
    },
    render: (value) => `[${(value as unknown[]).map((v) => (v === null ? "null" : element.render(v))).join(",")}]`,
    fallback: [],
    ...(toast !== undefined ? { toast } : {}),
  };
}

// ---- bit and varbit ----------------------------------------------------------------------------------

/**
 * bit(n)/varbit(n): a boolean for n = 1 (any bit set), else io.debezium.data.Bits with the length: the bits as a
 * BitSet whose bit 0 is the text's last character, written as BitSet.toByteArray (little-endian, no trailing zero
 * bytes, PostgresValueConverter.convertBits).
 */
function bitsCodec(length: number): Codec {
  if (length === 1) {
    return { ...BOOLEAN, value: (text) => (/^[01]+$/.test(text) ? /1/.test(text) : undefined) };
  }
  return {
    type: '"type":"bytes"',
    logical: `${named("io.debezium.data.Bits")},"parameters":{"length":"${length}"}`,
    value: (text) => {
      if (!/^[01]*$/.test(text)) return undefined;
      const bytes: number[] = [];
      for (let bit = 0; bit < text.length; bit++) {
        if (text[text.length - 1 - bit] === "1") bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) | (1 << (bit & 7));
      }
      return btoa(String.fromCharCode(...Array.from(bytes, (b) => b ?? 0)));
    },
    render: asString,
    fallback: "",
  };
}

// ---- point and PostGIS ---------------------------------------------------------------------------------

/** A double as little-endian bytes (a binary string). */
function doubleLE(x: number): string {
  const bytes = new Uint8Array(new Float64Array([x]).buffer);
  return String.fromCharCode(...bytes);
}

/** point: io.debezium.data.geometry.Point, x and y with the WKB of a 2D point and no SRID (Point.createValue). */
const POINT: Codec = {
  type: '"type":"struct","fields":[{"type":"double","optional":false,"field":"x"},' +
    '{"type":"double","optional":false,"field":"y"},{"type":"bytes","optional":true,"field":"wkb"},' +
    '{"type":"int32","optional":true,"field":"srid"}]',
  logical: `${named("io.debezium.data.geometry.Point")},"doc":"Geometry (POINT)"`,
  value: (text) => {
    const m = /^\(([^,()]+),([^,()]+)\)$/.exec(text); // PGpoint reads both with Double.parseDouble
    const [x, y] = m ? [javaParseDouble(m[1]), javaParseDouble(m[2])] : [];
    return x === undefined || y === undefined ? undefined : { x, y };
  },
  render: (value) => {
    const { x, y } = value as { x: number; y: number };
    const wkb = btoa(`\x01\x01\x00\x00\x00${doubleLE(x)}${doubleLE(y)}`);
    return `{"x":${javaDouble(x)},"y":${javaDouble(y)},"wkb":"${wkb}","srid":null}`;
  },
  fallback: { x: 0, y: 0 },
};

/**
 * PostGIS geometry/geography: the hex EWKB PostgreSQL sends, as its bytes (`wkb`, EWKB kept as is) and the SRID
 * read from it when its flag is set (PostgisGeometry.fromHexEwkb).
 */
function geometryCodec(kind: "Geometry" | "Geography"): Codec {
  return {
    type: '"type":"struct","fields":[{"type":"bytes","optional":false,"field":"wkb"},' +
      '{"type":"int32","optional":true,"field":"srid"}]',
    logical: `${named(`io.debezium.data.geometry.${kind}`)},"doc":"${kind}"`,
    value: (text) => {
      if (!/^(?:[0-9a-fA-F]{2}){9,}$/.test(text)) return undefined;
      const bytes = Uint8Array.from(text.match(/../g)!, (h) => parseInt(h, 16));
      const view = new DataView(bytes.buffer);
      const little = bytes[0] !== 0;
      const srid = view.getUint32(1, little) & 0x20000000 ? view.getInt32(5, little) : null;
      return { wkb: btoa(String.fromCharCode(...bytes)), srid };
    },
    render: (value) => {
      const { wkb, srid } = value as { wkb: string; srid: number | null };
      return `{"wkb":"${wkb}","srid":${srid}}`;
    },
    // PostgisGeometry.createEmpty: an empty GEOMETRYCOLLECTION.
    fallback: { wkb: btoa("\x01\x07\x00\x00\x00\x00\x00\x00\x00"), srid: null },
  };
}

// ---- pgvector ------------------------------------------------------------------------------------------

/** vector / halfvec: io.debezium.data.DoubleVector / FloatVector, an array of required float64 / float32. */
function vectorCodec(kind: "DoubleVector" | "FloatVector"): Codec {
  const double = kind === "DoubleVector";
  return {
    type: `"type":"array","items":{"type":"${double ? "double" : "float"}","optional":false}`,
    logical: named(`io.debezium.data.${kind}`),
    value: (text) => {
      const m = /^\s*\[(.*)\]\s*$/s.exec(text);
      if (!m) return undefined;
      const values = m[1].split(",").map((e) => javaParseDouble(e.trim()));
      if (values.some((v) => v === undefined)) return undefined;
      return double ? values : values.map((v) => Math.fround(v!));
    },
    render: (value) => `[${(value as number[]).map(double ? javaDouble : javaFloat).join(",")}]`,
    fallback: [],
  };
}

/** Double.parseDouble's reading of a decimal text; undefined where it throws. */
function javaParseDouble(text: string): number | undefined {
  if (/^[+-]?(NaN|Infinity)$/.test(text)) return Number(text.replace(/^\+/, ""));
  return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[dDfF]?$/.test(text) ? Number(text.replace(/[dDfF]$/, "")) : undefined;
}

/**
 * sparsevec (`{1:0.5,3:1}/5`): io.debezium.data.SparseDoubleVector, the dimensions and a map of index to value,
 * which JsonConverter writes as [index, value] pairs (its keys are not strings) in the order of Java's HashMap.
 */
const SPARSE_VECTOR: Codec = {
  type: '"type":"struct","fields":[{"type":"int16","optional":false,"field":"dimensions"},' +
    '{"type":"map","keys":{"type":"int16","optional":false},"values":{"type":"double","optional":false},' +
    '"optional":false,"field":"vector"}]',
  logical: `${named("io.debezium.data.SparseDoubleVector")},"doc":"Sparse double vector"`,
  value: (text) => {
    const m = /^\s*\{(.*)\}\s*\/\s*(-?\d+)\s*$/s.exec(text);
    if (!m) return undefined;
    const dimensions = Number(m[2]);
    const entries: [number, number][] = [];
    for (const part of m[1].trim() ? m[1].split(",") : []) {
      const [index, value] = part.split(":").map((p) => p.trim());
      const x = javaParseDouble(value ?? "");
      if (!/^-?\d+$/.test(index) || x === undefined) return undefined;
      entries.push([(Number(index) << 16) >> 16, x]);
    }
    return { dimensions: (dimensions << 16) >> 16, entries: hashMapOrder(entries, (k) => k, entries.length) };
  },
  render: (value) => {
    const { dimensions, entries } = value as { dimensions: number; entries: [number, number][] };
    return `{"dimensions":${dimensions},"vector":[${entries.map(([k, v]) => `[${k},${javaDouble(v)}]`).join(",")}]}`;
  },
  fallback: { dimensions: 0, entries: [] },
};

// ---- hstore ----------------------------------------------------------------------------------------------

/** Java's String.hashCode. */
function javaStringHash(text: string): number {
  let hash = 0;
  for (let i = 0; i < text.length; i++) hash = (Math.imul(hash, 31) + text.charCodeAt(i)) | 0;
  return hash;
}

/**
 * Entries in the order a java.util.HashMap built by putting them in turn iterates them: by bucket (the spread hash
 * masked by the final capacity), then in insertion order; a repeated key keeps its first place and takes the last
 * value. `initialCapacity` as `new HashMap<>(n)` takes it (16 for `new HashMap<>()`).
 */
export function hashMapOrder<K, V>(entries: [K, V][], hash: (key: K) => number, initialCapacity = 16): [K, V][] {
  const unique = new Map<K, V>();
  for (const [k, v] of entries) unique.set(k, v);
  let capacity = 1;
  while (capacity < initialCapacity) capacity *= 2;
  while (unique.size > capacity * 0.75) capacity *= 2;
  const bucket = (k: K) => {
    const h = hash(k);
    return (h ^ (h >>> 16)) & (capacity - 1);
  };
  const list = [...unique.entries()].map((e, i) => ({ e, i, b: bucket(e[0]) }));
  return list.sort((a, b) => a.b - b.b || a.i - b.i).map((x) => x.e);
}

/** The pairs of hstore's output (`"a"=>"1", "b"=>NULL`), as pgjdbc's HStoreConverter.fromString reads them. */
export function hstorePairs(text: string): [string, string | null][] | undefined {
  const pairs: [string, string | null][] = [];
  const quoted = /"((?:[^"\\]|\\.)*)"/y;
  let i = 0;
  const read = () => {
    quoted.lastIndex = i;
    const m = quoted.exec(text);
    if (!m) return undefined;
    i = quoted.lastIndex;
    return m[1].replace(/\\(.)/g, "$1");
  };
  while (i < text.length) {
    const key = read();
    if (key === undefined || text.slice(i, i + 2) !== "=>") return undefined;
    i += 2;
    const value = text.startsWith("NULL", i) ? (i += 4, null) : read();
    if (value === undefined) return undefined;
    pairs.push([key, value]);
    if (text.startsWith(", ", i)) i += 2;
    else if (i < text.length) return undefined;
  }
  return pairs;
}

/**
 * hstore under hstore.handling.mode: json as an io.debezium.data.Json text Jackson writes from the map, map as a
 * Connect map of string to optional string; both in the order of the HashMap HStoreConverter.fromString fills.
 */
function hstoreCodec(mode: ValueOptions["hstore"]): Codec {
  const object = (pairs: [string, string | null][]) =>
    `{${pairs.map(([k, v]) => `${jsonString(k)}:${v === null ? "null" : jsonString(v)}`).join(",")}}`;
  const toastPairs: [string, string | null][] = [[PLACEHOLDER, PLACEHOLDER]];
  const value = (text: string) => {
    const pairs = hstorePairs(text);
    return pairs && hashMapOrder(pairs, javaStringHash);
  };
  if (mode === "json") {
    return {
      ...stringCodec(named("io.debezium.data.Json")),
      value: (text) => {
        const pairs = value(text);
        return pairs && object(pairs);
      },
      fallback: "{}",
      toast: object(toastPairs),
    };
  }
  return {
    type: '"type":"map","keys":{"type":"string","optional":false},"values":{"type":"string","optional":true}',
    logical: "",
    value,
    render: (pairs) => object(pairs as [string, string | null][]),
    fallback: [],
    toast: toastPairs,
  };
}
