// What the client scripts share: bounded waits, named checks, and the closing line.
let passed = 0;
let failed = 0;

/** The URL given on the command line; exits when missing. Also arms an overall time limit. */
export function target(script) {
  const url = process.argv[2];
  if (!url) {
    console.error(`usage: node ${script} URL`);
    process.exit(2);
  }
  setTimeout(() => {
    console.error("overall timeout");
    process.exit(1);
  }, 60000).unref();
  return url;
}

export const within = (promise, what, ms = 5000) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout: ${what}`)), ms))]);

export async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.message}`);
  }
}

/** Prints "N passed, M failed" and exits non-zero on any failure. */
export function report() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
