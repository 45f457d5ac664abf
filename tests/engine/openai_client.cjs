// Drives `fathom-engine serve` with the official OpenAI Node client (npm `openai`), as a user's
// application would. argv: <openai module dir> <base url> <model id>. Prints one JSON summary line;
// exits non-zero on the first mismatch.
const OpenAI = require(process.argv[2]);
const baseURL = process.argv[3];
const model = process.argv[4];

function check(cond, what) {
  if (!cond) {
    console.error('FAILED: ' + what);
    process.exit(1);
  }
}

(async () => {
  const client = new OpenAI({ baseURL, apiKey: 'unused-local-key', maxRetries: 0 });
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.includes(model), `models.list has ${model}: ${JSON.stringify(ids)}`);

  const completion = await client.completions.create({ model, prompt: 'The Congress', max_tokens: 16, temperature: 0 });
  check(typeof completion.choices[0].text === 'string' && completion.choices[0].text.length > 0, 'completion text');
  check(completion.usage.completion_tokens > 0, 'completion usage');

  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say something about the Union.' }];
  const whole = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0, seed: 1 });
  const wholeText = whole.choices[0].message.content;
  check(whole.choices[0].message.role === 'assistant', 'chat role');

  const stream = await client.chat.completions.create({ model, messages, max_tokens: 24, temperature: 0, seed: 1, stream: true });
  let streamed = '';
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    const c = chunk.choices[0];
    if (c && c.delta && typeof c.delta.content === 'string') streamed += c.delta.content;
    if (c && c.finish_reason) finish = c.finish_reason;
  }
  check(chunks > 2, `streamed ${chunks} chunks`);
  check(streamed === wholeText, `streamed chat equals the non-streamed one: ${JSON.stringify(streamed)} vs ${JSON.stringify(wholeText)}`);
  check(finish === 'stop' || finish === 'length', `finish_reason ${finish}`);

  let status = 0;
  let code = null;
  try {
    await client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 });
  } catch (e) {
    status = e.status;
    code = e.code;
  }
  check(status === 404 && code === 'model_not_found', `unknown model → 404 model_not_found (got ${status} ${code})`);

  try {
    status = 0;
    await client.completions.create({ model, prompt: 'x', max_tokens: 2, temperature: -3 });
  } catch (e) {
    status = e.status;
  }
  check(status === 400, `temperature -3 → 400 (got ${status})`);

  console.log(JSON.stringify({ ok: true, models: ids, completion: completion.choices[0].text, chat: wholeText, chunks }));
})().catch((e) => {
  console.error('FAILED: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
