// Runs a Snowflake JavaScript table function's body the way Snowflake calls it.
//
// stdin: {"body": "<the text between $$ and $$>", "partitions": [[row, ...], ...]}
// stdout: [[written row, ...], ...], one list per partition.
//
// The convention (Snowflake "Tabular JavaScript UDFs"): the body is one JavaScript object
// literal; for every partition Snowflake takes a fresh handler object, calls
// initialize(argumentInfo, context) if defined, processRow(row, rowWriter, context) for each
// row in the partition's ORDER BY order, then finalize(rowWriter, context) if defined. Row
// properties are the argument names in upper case; a SQL NULL argument is `undefined`; a
// TIMESTAMP_TZ arrives as a Date. A written null or undefined column is SQL NULL.
"use strict";

const fs = require("fs");

const request = JSON.parse(fs.readFileSync(0, "utf8"));
const TIMESTAMP_COLUMNS = new Set(request.timestamp_columns || []);

function sqlRow(row) {
  const out = {};
  for (const [name, value] of Object.entries(row)) {
    if (name !== name.toUpperCase()) {
      throw new Error(`argument ${name} is not upper case`);
    }
    if (value === null) {
      continue; // SQL NULL: the property reads as undefined
    }
    out[name] = TIMESTAMP_COLUMNS.has(name) ? new Date(value) : value;
  }
  return out;
}

function jsonRow(row) {
  const out = {};
  for (const [name, value] of Object.entries(row)) {
    if (value === undefined || value === null) {
      out[name] = null;
    } else if (value instanceof Date) {
      out[name] = value.toISOString();
    } else if (typeof value === "number" && !Number.isFinite(value)) {
      throw new Error(`column ${name} is ${value}: Snowflake rejects it for a DOUBLE`);
    } else {
      out[name] = value;
    }
  }
  return out;
}

const results = [];
for (const partition of request.partitions) {
  // eslint-disable-next-line no-eval
  const handler = eval("(" + request.body + ")");
  if (typeof handler !== "object" || typeof handler.processRow !== "function") {
    throw new Error("the function body is not an object literal with processRow");
  }
  const written = [];
  const rowWriter = {
    writeRow(row) {
      // Snowflake copies the row when it is written: later changes to its arrays do not leak
      written.push(JSON.parse(JSON.stringify(jsonRow(row))));
    },
  };
  const context = {};
  if (typeof handler.initialize === "function") {
    handler.initialize({}, context);
  }
  for (const row of partition) {
    handler.processRow(sqlRow(row), rowWriter, context);
  }
  if (typeof handler.finalize === "function") {
    handler.finalize(rowWriter, context);
  }
  results.push(written);
}
process.stdout.write(JSON.stringify(results));
