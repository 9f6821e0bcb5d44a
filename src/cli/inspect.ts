import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { diffCheckpoints, inspectCheckpoint, searchCheckpointMemory, type CheckpointInfo, type PsNode } from '../engine/inspect.js';
import { humanSize, table } from './format.js';
import { getEngine, out, type Ctx } from './context.js';

interface InspectFlags {
  psTree?: boolean;
  psTreeCmd?: boolean;
  psTreeEnv?: boolean;
  pid?: string;
  files?: boolean;
  sockets?: boolean;
  mounts?: boolean;
  stats?: boolean;
  all?: boolean;
  format: string;
  search?: string;
  searchRegex?: string;
  context: string;
}

function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(v)) throw new FerryError('EINVAL', `invalid ${name} "${v}": give a number`);
  return Number(v);
}

/** `ferry checkpoint inspect|show`: looking inside checkpoints without restoring them. */
export function registerInspectCommands(cp: Command, ctx: Ctx): void {
  cp.command('inspect')
    .description('show what a checkpoint holds (a container\'s checkpoint, a checkpoint image, or an archive: Ferry\'s, Podman\'s, CRI-O\'s or containerd\'s) without restoring it')
    .argument('<target>', 'a container with a checkpoint, a checkpoint image, or a checkpoint archive file')
    .option('--ps-tree', 'show the process tree')
    .option('--ps-tree-cmd', 'show the process tree with each process\'s command line (read from its dumped memory)')
    .option('--ps-tree-env', 'show the process tree with each process\'s environment (read from its dumped memory)')
    .option('-p, --pid <pid>', 'only this process (with its children); with --search, only its memory')
    .option('--files', 'show each process\'s open files')
    .option('--sockets', 'show each process\'s sockets')
    .option('--mounts', 'show the container\'s mounts')
    .option('--stats', 'show CRIU\'s dump statistics (an error when the checkpoint has none)')
    .option('--all', 'show everything: the process tree with command lines and environments, files, sockets, mounts')
    .option('--format <format>', 'tree or json', 'tree')
    .option('-s, --search <string>', 'find a string in the dumped memory')
    .option('-r, --search-regex <re>', 'find a regular expression in the dumped memory')
    .option('-c, --context <n>', 'with --search: bytes of context shown either side of a match', '0')
    .action(async (target: string, f: InspectFlags) => {
      if (!['tree', 'json'].includes(f.format)) throw new FerryError('EINVAL', `invalid --format "${f.format}": use tree or json`);
      const pid = intFlag('--pid', f.pid);
      const engine = getEngine(ctx);
      if (f.search !== undefined || f.searchRegex !== undefined) {
        if (f.search !== undefined && f.searchRegex !== undefined) throw new FerryError('EINVAL', 'give either --search or --search-regex, not both');
        if (f.search === '') throw new FerryError('EINVAL', '--search needs a non-empty string');
        const matches = await searchCheckpointMemory(engine, target, { search: f.search, regex: f.searchRegex, pid, context: intFlag('--context', f.context) });
        if (f.format === 'json') return out(JSON.stringify(matches, null, 4) + '\n');
        if (!matches.length) return out(`no match in the memory of ${target}\n`);
        return out(table(['PID', 'COMMAND', 'ADDRESS', 'MATCH', 'INSTANCE'], matches.map((m) => [String(m.pid), m.command, `0x${m.address.toString(16).padStart(12, '0')}`, m.match, m.instance])));
      }
      const info = await inspectCheckpoint(engine, target, {
        psTree: f.psTree,
        psTreeCmd: f.psTreeCmd,
        psTreeEnv: f.psTreeEnv,
        pid,
        files: f.files,
        sockets: f.sockets,
        mounts: f.mounts,
        stats: f.stats,
        all: f.all,
      });
      if (f.format === 'json') {
        const { target: _t, ...node } = info;
        return out(JSON.stringify([node], null, 4) + '\n');
      }
      out(renderTree(info));
    });

  cp.command('show')
    .description('one line per checkpoint: container, image, ID, runtime, times, engine and sizes')
    .argument('<targets...>', 'containers with a checkpoint, checkpoint images, or checkpoint archive files')
    .option('--format <format>', 'json for the same fields as `inspect --format json`')
    .action(async (targets: string[], f: { format?: string }) => {
      if (f.format !== undefined && f.format !== 'json') throw new FerryError('EINVAL', `invalid --format "${f.format}": use json, or leave it out for a table`);
      const engine = getEngine(ctx);
      const infos: CheckpointInfo[] = [];
      for (const t of targets) infos.push(await inspectCheckpoint(engine, t, {}));
      if (f.format === 'json') return out(JSON.stringify(infos.map(({ target: _t, ...n }) => n), null, 4) + '\n');
      out(
        table(
          ['CONTAINER', 'IMAGE', 'ID', 'RUNTIME', 'CREATED', 'CHECKPOINTED', 'ENGINE', 'IP', 'CHKPT SIZE', 'ROOT FS DIFF SIZE'],
          infos.map((i) => [i.container_name, i.image, i.id.slice(0, 12), i.runtime, i.created, i.checkpointed ?? '', i.engine, i.ip ?? '', humanSize(i.checkpoint_size.total_size ?? 0), humanSize(i.checkpoint_size.root_fs_diff_size ?? 0)]),
        ),
      );
    });
}

interface TreeNode {
  label: string;
  children: TreeNode[];
}

const node = (label: string, children: TreeNode[] = []): TreeNode => ({ label, children });

function draw(n: TreeNode, prefix: string, last: boolean, root: boolean): string {
  let s = root ? `${n.label}\n` : `${prefix}${last ? '└── ' : '├── '}${n.label}\n`;
  const p = root ? '' : prefix + (last ? '    ' : '│   ');
  n.children.forEach((c, i) => (s += draw(c, p, i === n.children.length - 1, false)));
  return s;
}

const usec = (us: number | undefined): string => `${us ?? 0} us`;

/** checkpointctl's tree view. */
export function renderTree(i: CheckpointInfo): string {
  const top: TreeNode[] = [node(`Image: ${i.image}`), node(`ID: ${i.id}`), node(`Runtime: ${i.runtime}`), node(`Created: ${i.created}`)];
  if (i.checkpointed) top.push(node(`Checkpointed: ${i.checkpointed}`));
  top.push(node(`Engine: ${i.engine}`));
  if (i.metadata?.pod_name) top.push(node(`Pod: ${i.metadata.pod_name}${i.metadata.kubernetes_namespace ? ` (namespace ${i.metadata.kubernetes_namespace})` : ''}`));
  if (i.networks?.length) {
    top.push(
      node(
        'Network Interfaces',
        i.networks.flatMap((n) =>
          Object.entries(n.interfaces).map(([ifname, x]) =>
            node(`${n.name} (${ifname})`, [...(x.ip ? [node(`IP: ${x.ip}`)] : []), ...(x.mac ? [node(`MAC: ${x.mac}`)] : []), ...(x.gateway ? [node(`Gateway: ${x.gateway}`)] : [])]),
          ),
        ),
      ),
    );
  }
  const size = i.checkpoint_size;
  top.push(node(`Checkpoint size: ${humanSize(size.total_size ?? 0)}`, size.memory_pages_size ? [node(`Memory pages size: ${humanSize(size.memory_pages_size)}`)] : []));
  if (size.root_fs_diff_size) top.push(node(`Root FS diff size: ${humanSize(size.root_fs_diff_size)}`));
  if (i.statistics) {
    const s = i.statistics;
    top.push(
      node('CRIU dump statistics', [
        node(`Freezing time: ${usec(s.freezing_time)}`),
        node(`Frozen time: ${usec(s.frozen_time)}`),
        node(`Memdump time: ${usec(s.memdump_time)}`),
        node(`Memwrite time: ${usec(s.memwrite_time)}`),
        node(`Pages scanned: ${s.pages_scanned ?? 0}`),
        node(`Pages written: ${s.pages_written ?? 0}`),
      ]),
    );
  }
  const files = new Map((i.file_descriptors ?? []).map((f) => [f.pid, f.open_files ?? []]));
  const sockets = new Map((i.sockets ?? []).map((s) => [s.pid, s.open_sockets ?? []]));
  const proc = (p: PsNode): TreeNode => {
    const kids: TreeNode[] = [];
    if (p.cmdline !== undefined) kids.push(node(`Command line: ${p.cmdline}`));
    if (p.environment_variables) kids.push(node('Environment variables', Object.entries(p.environment_variables).map(([k, v]) => node(`${k}=${v}`))));
    const fl = files.get(p.pid);
    if (fl?.length) kids.push(node('Open files', fl.map((f) => node(`[${f.type} ${f.fd}]  ${f.path}`))));
    const sk = sockets.get(p.pid);
    if (sk?.length) {
      kids.push(
        node(
          'Open sockets',
          sk.map((s) => {
            const d = s.data;
            if (d.type === 'UNIX') return node(`[UNIX (${d.socket_type ?? 'socket'})${d.state ? ` ${d.state}` : ''}]  ${d.address || '(unnamed)'}`);
            return node(`[${d.type} (${d.state})]  ${d.src}:${d.src_port} -> ${d.dst}:${d.dst_port}`);
          }),
        ),
      );
    }
    kids.push(...(p.children ?? []).map(proc));
    const state = p.task_state && p.task_state !== 'Alive' ? ` (${p.task_state})` : '';
    return node(`[${p.pid}]  ${p.command}${state}`, kids);
  };
  if (i.process_tree) top.push(node('Process tree', [proc(i.process_tree)]));
  else if (files.size || sockets.size) {
    // --files/--sockets without the tree: grouped by PID.
    for (const [pid, fl] of files) if (fl.length) top.push(node(`Open files of [${pid}]`, fl.map((f) => node(`[${f.type} ${f.fd}]  ${f.path}`))));
    for (const [pid, sk] of sockets) {
      if (sk.length) top.push(node(`Open sockets of [${pid}]`, sk.map((s) => node(s.data.type === 'UNIX' ? `[UNIX]  ${s.data.address || '(unnamed)'}` : `[${s.data.type} (${s.data.state})]  ${s.data.src}:${s.data.src_port} -> ${s.data.dst}:${s.data.dst_port}`))));
    }
  }
  if (i.mounts) top.push(node('Overview of mounts', i.mounts.map((m) => node(`Destination: ${m.destination}`, [node(`Type: ${m.type}`), node(`Source: ${m.source}`)]))));
  return draw(node(i.container_name || i.id, top), '', true, true);
}

/** `ferry checkpoint diff A B`: what changed between two checkpoints of one container. */
export function registerDiffCommand(cp: Command, ctx: Ctx): void {
  cp.command('diff')
    .description('compare two checkpoints of the same container: processes, open files, sockets, memory size')
    .argument('<a>', 'the older checkpoint: a container with a checkpoint, or an archive')
    .argument('<b>', 'the newer one')
    .option('--ps-tree-cmd', 'compare the processes\' command lines too')
    .option('--ps-tree-env', 'read the environments too')
    .option('--files', 'compare open files')
    .option('--sockets', 'compare sockets')
    .option('--show-unchanged', 'list what did not change too')
    .option('--format <format>', 'tree or json', 'tree')
    .action(async (a: string, b: string, f: { psTreeCmd?: boolean; psTreeEnv?: boolean; files?: boolean; sockets?: boolean; showUnchanged?: boolean; format: string }) => {
      if (!['tree', 'json'].includes(f.format)) throw new FerryError('EINVAL', `invalid --format "${f.format}": use tree or json`);
      const d = await diffCheckpoints(getEngine(ctx), a, b, f);
      if (f.format === 'json') return out(JSON.stringify(d, null, 4) + '\n');
      const lines = [`Container: ${d.container_name}`, `Image:     ${d.image}`, `ID:        ${d.container_id}`, '', `Checkpoint A: ${d.checkpoint_a.created}, ${humanSize(d.checkpoint_a.total_size)}`, `Checkpoint B: ${d.checkpoint_b.created}, ${humanSize(d.checkpoint_b.total_size)}`, ''];
      const section = <T>(title: string, c: { added?: T[]; removed?: T[]; modified?: T[]; unchanged?: T[] } | undefined, show: (x: T) => string): void => {
        if (!c) return;
        lines.push(`${title}:`);
        const marks: [keyof typeof c, string][] = [['added', '+'], ['removed', '-'], ['modified', '~'], ['unchanged', '=']];
        let any = false;
        for (const [k, m] of marks) for (const x of c[k] ?? []) (lines.push(`  ${m} ${show(x)}`), (any = true));
        if (!any) lines.push('  = no change');
      };
      const mem = d.memory_changes.size_change_bytes;
      lines.push(`Memory: ${mem > 0 ? '+' : mem < 0 ? '-' : '='} ${humanSize(Math.abs(mem))}`);
      section('Processes', d.process_changes, (p) => `[${p.pid}]  ${p.command}${p.cmdline !== undefined ? `  (${p.cmdline})` : ''}`);
      section('Files', d.file_changes, (x) => `[${x.pid}] ${x.type} ${x.fd}  ${x.path}`);
      section('Sockets', d.socket_changes, (s) => `[${s.pid}] ${s.type === 'UNIX' ? `UNIX ${s.address ?? '(unnamed)'}` : `${s.type} (${s.state})  ${s.source}:${s.src_port} -> ${s.dest}:${s.dst_port}`}`);
      lines.push('', d.summary);
      out(lines.join('\n') + '\n');
    });
}
