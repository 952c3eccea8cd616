// Scenarios run with the TypeScript SDK (@anthropic-ai/sdk) against a running execbox server.
// Usage: node scenarios.cjs SCENARIO; E2E_URL (and E2E_EXPIRING_URL, MAX_TOOL_ITERATIONS,
// CONTAINER_TTL_S) in the environment. Prints one JSON object: what the scenario saw, which
// tests/e2e/test_typescript_sdk.py checks.
const Anthropic = require('@anthropic-ai/sdk').default;
const { betaTool } = require('@anthropic-ai/sdk/helpers/beta/json-schema');

const URL = process.env.E2E_URL;
const BASH = { type: 'code_execution_20250825', name: 'code_execution' };
const PYTHON = { type: 'code_execution_20250522', name: 'code_execution' };
const MODEL = 'execbox-direct';
const fence = (info, code) => '```' + info + '\n' + code + '\n```\n';

// A client, and the JSON bodies of the Messages requests it sends.
function recordingClient(baseURL = URL) {
  const bodies = [];
  const client = new Anthropic({
    baseURL,
    apiKey: 'test',
    maxRetries: 0,
    fetch: async (url, init) => {
      if (String(url).split('?')[0].endsWith('/v1/messages')) bodies.push(JSON.parse(init.body));
      return fetch(url, init);
    },
  });
  return { client, bodies };
}

function failure(err) {
  if (!(err instanceof Anthropic.APIError)) throw err;
  return {
    name: err.constructor.name,
    status: err.status,
    body: err.error,
    shouldRetry: err.headers ? err.headers.get('x-should-retry') : null,
  };
}

async function expectFailure(promise) {
  try {
    await promise;
  } catch (err) {
    return failure(err);
  }
  throw new Error('the request succeeded');
}

const looked = [];
const lookup = betaTool({
  name: 'lookup',
  description: 'Look a word up in the dictionary.',
  inputSchema: { type: 'object', properties: { word: { type: 'string' } }, required: ['word'] },
  run: async ({ word }) => {
    looked.push(word);
    return `${word}: a container for things`;
  },
});

const REPL = { type: 'code_execution_20260120', name: 'code_execution' };
// The same dictionary tool, callable from code in the container (programmatic tool calling).
const codeLookup = { ...lookup, allowed_callers: ['code_execution_20260120'] };

const scenarios = {
  // Programmatic tool calling by hand (parallel calls, then a streamed continuation), and
  // through the tool runner in its default (thread) mode.
  async ptc() {
    const { client, bodies } = recordingClient();
    const { run, parse, ...declared } = codeLookup;
    const tools = [REPL, declared];
    const prompt = fence('python', "import asyncio\na, b = await asyncio.gather(lookup({'word': 'a'}), lookup({'word': 'b'}))\nprint(a, '|', b)");
    const first = await client.messages.create({ model: MODEL, max_tokens: 1024, tools, messages: [{ role: 'user', content: prompt }] });
    const results = first.content
      .filter((block) => block.type === 'tool_use')
      .map((call) => ({ type: 'tool_result', tool_use_id: call.id, content: `${call.input.word}!` }));
    const final = await client.messages
      .stream({
        model: MODEL,
        max_tokens: 1024,
        tools,
        container: first.container.id,
        messages: [{ role: 'user', content: prompt }, { role: 'assistant', content: first.content }, { role: 'user', content: results }],
      })
      .finalMessage();
    const runner = await client.beta.messages.toolRunner({
      model: MODEL,
      max_tokens: 1024,
      tools: [REPL, codeLookup],
      messages: [{ role: 'user', content: fence('python', "print(await lookup({'word': 'ptc'}))") }],
    });
    return { first, final, runner, looked, bodies };
  },

  // The tool runner in its default (thread) mode: a client tool between two code executions.
  async runner_client_tool() {
    const { client, bodies } = recordingClient();
    const prompt = fence('bash', 'echo before > note.txt') + fence('tool lookup', '{"word": "box"}') +
      fence('bash', 'cat note.txt; echo after');
    const final = await client.beta.messages.toolRunner({
      model: MODEL,
      max_tokens: 2048,
      system: 'Answer briefly.',
      tools: [BASH, lookup],
      messages: [{ role: 'user', content: prompt }],
    });
    return { final, bodies, looked };
  },

  // The tool runner resuming a pause_turn: the continue carries no message.
  async runner_pause() {
    const { client, bodies } = recordingClient();
    const steps = Number(process.env.MAX_TOOL_ITERATIONS) + 1;
    let prompt = '';
    for (let n = 1; n <= steps; n++) prompt += fence('bash', `echo step ${n}`);
    const runner = client.beta.messages.toolRunner({
      model: MODEL,
      max_tokens: 2048,
      tools: [BASH],
      messages: [{ role: 'user', content: prompt }],
    });
    const replies = [];
    for await (const reply of runner) replies.push(reply);
    return { replies, bodies };
  },

  // Threads by hand: create, continue, and the two errors a runner replays on.
  async threads() {
    const { client, bodies } = recordingClient();
    const first = await client.beta.messages.create({
      model: MODEL,
      max_tokens: 1024,
      tools: [BASH],
      messages: [{ role: 'user', content: fence('bash', 'echo one') }],
      thread: { type: 'create' },
    });
    const follow = { type: 'continue', previous_message_id: first.id };
    const more = [{ role: 'user', content: fence('bash', 'echo two') }];
    const second = await client.beta.messages.create({ model: MODEL, max_tokens: 1024, messages: more, thread: follow });
    const again = await expectFailure(
      client.beta.messages.create({ model: MODEL, max_tokens: 1024, messages: more, thread: follow }),
    );
    const lost = await expectFailure(
      client.beta.messages.create({
        model: MODEL,
        max_tokens: 1024,
        messages: more,
        thread: { type: 'continue', previous_message_id: 'msg_gone' },
      }),
    );
    const repeated = await expectFailure(
      client.beta.messages.create({
        model: MODEL,
        max_tokens: 1024,
        tools: [BASH],
        messages: more,
        thread: { type: 'continue', previous_message_id: second.id },
      }),
    );
    return { first, second, again, lost, repeated, bodies };
  },

  // Unknown fields and the anthropic-version header.
  async strictness() {
    const { client } = recordingClient();
    const base = { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
    return {
      topLevel: await expectFailure(client.messages.create({ ...base, response_format: { type: 'json' } })),
      nested: await expectFailure(
        client.messages.create({ ...base, messages: [{ role: 'user', content: 'hi', name: 'me' }] }),
      ),
      noVersion: await expectFailure(client.messages.create(base, { headers: { 'anthropic-version': null } })),
      badVersion: await expectFailure(
        client.messages.create(base, { headers: { 'anthropic-version': '2023-10-01' } }),
      ),
      oldVersion: await client.messages.create(base, { headers: { 'anthropic-version': '2023-06-01' } }),
    };
  },

  // Unknown and expired containers, in both forms of `container`.
  async containers() {
    const { client } = recordingClient();
    const ask = (c, container) =>
      c.messages.create({
        model: MODEL,
        max_tokens: 100,
        tools: [BASH],
        messages: [{ role: 'user', content: fence('bash', 'echo hi') }],
        ...(container === undefined ? {} : { container }),
      });
    const unknown = await expectFailure(ask(client, 'container_nope'));
    const unknownObject = await expectFailure(ask(client, { id: 'container_nope' }));
    const expiring = recordingClient(process.env.E2E_EXPIRING_URL).client;
    const first = await ask(expiring);
    await new Promise((resolve) => setTimeout(resolve, (Number(process.env.CONTAINER_TTL_S) + 2) * 1000));
    const expired = await expectFailure(ask(expiring, first.container.id));
    return { unknown, unknownObject, expired };
  },

  // Responses and stream events of every kind execbox sends, GA and beta, as received.
  async fields() {
    const { client } = recordingClient();
    // At most MAX_TOOL_ITERATIONS - 1 executions each, so no response pauses.
    const prompt = fence('python', 'print(6 * 7)') + fence('create a.txt', 'one') +
      fence('str_replace a.txt', 'one\n=====\ntwo') + fence('view a.txt', '') + fence('tool lookup', '{"word": "box"}');
    const failing = fence('view missing.txt', '') + fence('bash', 'echo oops >&2; exit 3');
    const tools = [BASH, { name: 'lookup', description: 'Look up.', input_schema: { type: 'object' } }];
    const ask = { model: MODEL, max_tokens: 2048, tools, messages: [{ role: 'user', content: prompt }] };
    const fail = { ...ask, messages: [{ role: 'user', content: failing }] };
    const text = { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
    const python = { ...text, tools: [PYTHON], messages: [{ role: 'user', content: fence('python', 'print(1)') }] };
    const collect = async (stream) => {
      const events = [];
      for await (const event of stream) events.push(event);
      return events;
    };
    return {
      messages: [
        await client.messages.create(ask),
        await client.messages.create(fail),
        await client.messages.create(text),
        await client.messages.create(python),
      ],
      betaMessages: [await client.beta.messages.create(ask), await client.beta.messages.create(python)],
      events: [
        ...(await collect(await client.messages.create({ ...ask, stream: true }))),
        ...(await collect(await client.messages.create({ ...fail, stream: true }))),
        ...(await collect(await client.messages.create({ ...text, stream: true }))),
      ],
      betaEvents: await collect(await client.beta.messages.create({ ...python, stream: true })),
      streamed: await client.beta.messages.stream(ask).finalMessage(),
    };
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
scenarios[name]().then(
  (result) => process.stdout.write(JSON.stringify(result)),
  (err) => {
    console.error(err && err.stack ? err.stack : err);
    process.exit(1);
  },
);
