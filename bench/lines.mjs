// A 'data' listener for a child's output: onLine(line, record) once per complete line, with the
// line parsed when it is a JSON object (the daemon's pino lines), undefined otherwise.
export function outputLines(onLine) {
  let rest = '';
  return (chunk) => {
    rest += chunk;
    let i;
    while ((i = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      let record;
      try {
        record = JSON.parse(line);
      } catch {
        record = undefined;
      }
      onLine(line, record !== null && typeof record === 'object' ? record : undefined);
    }
  };
}
