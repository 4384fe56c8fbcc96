// The longer help texts, shown after the usage and options commander generates (plinth COMMAND --help).

export const IMPORT_HELP = [
  'Imports the output of `linuxkit build -format kernel+initrd`: PREFIX-kernel, PREFIX-initrd.img and',
  'PREFIX-cmdline are uploaded under NAME/ (NAME defaults to the last part of PREFIX), then a bootenv NAME is',
  'created that boots them, pinned by their sha256 (the daemon refuses to serve bytes that differ), with',
  'the cmdline as bootParams plus initrd=<initrd name>. --replace re-imports over an existing bootenv NAME.',
].join('\n');

export const FETCH_HELP = [
  'Downloads each artifact of bootenv NAME that carries a url, with progress, and streams it to the daemon,',
  'which keeps it only when its sha256 is the one the bootenv pins. Artifacts already on the daemon with the',
  'right digest are skipped (--force downloads them again). Artifacts without a url must be uploaded with',
  '`plinth files upload`; the command fails when one of them is missing.',
].join('\n');

export const FILES_HELP = [
  "Files live under the daemon's files root and are served at http://HOST:8091/files/REMOTE.",
  "upload streams LOCAL (any size) to REMOTE (default: LOCAL's name; a REMOTE ending in / keeps the name).",
  'It hashes LOCAL first, sends the digest as X-Checksum-Sha256 so the daemon keeps nothing that does not',
  'match, and checks the digest the daemon answers. --sha256 HEX skips the local pass and has the daemon check',
  'the file against HEX instead (a digest from the vendor). A progress bar is drawn when stderr is a terminal.',
].join('\n');

export const WATCH_HELP = [
  "Follows the daemon's live events (GET /api/v1/events) and prints one line per event until Ctrl-C:",
  'machines.created/updated/deleted, lease.*, dhcp.*, boot.*, files.uploaded, ...',
  'With --output json each line is one event as a JSON object (NDJSON); yaml prints one document per event.',
].join('\n');

export const PREFS_HELP = [
  'Global settings: defaultBootEnv, unknownBootEnv, knownTokenTtl, rogueDhcpWarnings, answerRouterSolicitations.',
  'A VALUE that parses as JSON is sent as JSON (3600, true, null); anything else as a string (local).',
].join('\n');
