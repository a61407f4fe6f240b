-- Golden tests: GQEAttention and the LM against our PyTorch reference
-- (tests/reference/make_goldens.py, run on the GPU machine; the outputs are
-- the committed files in tests/golden/). Relative tolerance 1e-4 in f32.
local gqe = require "gqe"

local TOL = 1e-4
local dir = "tests/golden"

local function files(prefix)
  local out = {}
  local p = io.popen('ls ' .. dir .. '/' .. prefix .. '*.safetensors 2>/dev/null')
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local function bool(s) return s == "true" or s == "True" or s == "1" end

local function attn_config(meta)
  return {
    dim = tonumber(meta.dim), experts = tonumber(meta.experts), groups = tonumber(meta.groups),
    k = tonumber(meta.k), head_dim = tonumber(meta.head_dim), variant = meta.variant,
    router = meta.router, rope = bool(meta.rope), rope_theta = tonumber(meta.rope_theta),
    causal = bool(meta.causal), kind = meta.kind,
  }
end

local function close(name, got, want)
  local err = got:rel_err(want)
  assert(err <= TOL, string.format("%s: relative error %.3g > %.0e", name, err, TOL))
end

describe("GQEAttention matches the PyTorch reference", function()
  local cases = files("attn_")
  it("has golden files", function() assert.is_true(#cases >= 8) end)
  for _, path in ipairs(cases) do
    it(path, function()
      local t, meta = gqe.load_safetensors(path)
      local layer = gqe.nn.GQEAttention(attn_config(meta))
      layer:load(t)
      local y = layer:forward(t.x)
      close("y", y, t.y)
      if meta.kind ~= "gqa" then
        local probs, idx = layer:routing()
        close("probs", probs, t.probs)
        assert.are.same(t.indices:totable(), idx:totable())
        local aux = layer:aux_loss()
        assert(math.abs(aux - t.aux:item()) <= TOL * math.max(1, math.abs(t.aux:item())), "aux " .. aux)
      end
      layer:zero_grad()
      local dx = layer:backward(t.dy, tonumber(meta.aux_coef) or 0)
      close("dx", dx, t.dx)
      for name, g in pairs(layer:grads()) do
        assert(t["grad." .. name], "golden lacks grad." .. name)
        close("grad." .. name, g, t["grad." .. name])
      end
    end)
  end
end)

describe("LM matches the PyTorch reference", function()
  local cases = files("lm_")
  it("has golden files", function() assert.is_true(#cases >= 2) end)
  for _, path in ipairs(cases) do
    it(path, function()
      local t, meta = gqe.load_safetensors(path)
      local lm = gqe.nn.LM{
        vocab = tonumber(meta.vocab), dim = tonumber(meta.dim), layers = tonumber(meta.layers),
        max_seq = 64, attention = meta.kind, experts = tonumber(meta.experts),
        groups = tonumber(meta.groups), k = tonumber(meta.k), head_dim = tonumber(meta.head_dim),
        variant = meta.variant, router = meta.router, rope = bool(meta.rope),
        rope_theta = tonumber(meta.rope_theta), mlp = meta.mlp,
        mlp_hidden = tonumber(meta.mlp_hidden), tied = bool(meta.tied),
      }
      -- the file also holds the batch, losses and gradients: every parameter
      -- must be there, other keys are expected
      local _, missing = lm:load(t, { strict = false })
      assert.same({}, missing)
      local loss, ce, aux = lm:loss(t.tokens, t.targets, tonumber(meta.aux_coef))
      assert(math.abs(loss - t.loss:item()) <= TOL * math.abs(t.loss:item()), "loss " .. loss .. " vs " .. t.loss:item())
      assert(math.abs(ce - t.ce:item()) <= TOL * math.abs(t.ce:item()), "ce")
      lm:zero_grad()
      lm:backward()
      for name, g in pairs(lm:grads()) do
        assert(t["grad." .. name], "golden lacks grad." .. name)
        close("grad." .. name, g, t["grad." .. name])
      end
    end)
  end
end)
