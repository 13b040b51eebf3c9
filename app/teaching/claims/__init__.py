"""Every claim of the study note, measured with the app's own models and runs.

    measure("R1", store) -> Verdict        measure_all(store) -> {claim id: Verdict}

Zoo-based claims are measured on the shipped models with fixed held-out inputs, each in about a
second. Claims about training (R3, R4, N2, N3, N4, P2) read the precomputed sweeps of
`python -m app.lab.precompute` from the run store and are "not_measured" until those are there.
"""

from __future__ import annotations

from app.lab.store import RunStore
from app.teaching.claims import depth, norm, position, residual, stacks
from app.teaching.claims.common import VERDICTS, Verdict


def _claim(en: str, zh: str, lesson: str, group: str) -> dict[str, str]:
    return {"en": en, "zh": zh, "lesson": lesson, "group": group}


CLAIMS: dict[str, dict[str, str]] = {
    "R1": _claim("With H(x) = F(x) + x the gradient is ∂F/∂x + 1, so it still reaches shallow layers when ∂F/∂x is "
                 "tiny.", "H(x) = F(x) + x 的梯度为 ∂F/∂x + 1,即使 ∂F/∂x 很小,梯度也能传回浅层。",
                 "residual", "R"),
    "R2": _claim("Residual connections keep the original input (the token's identity) alive in deep layers.",
                 "残差连接让原始输入(词的身份)在深层依然保留。", "residual", "R"),
    "R3": _claim("Without residual connections a Transformer deeper than about 6 layers hardly converges.",
                 "去掉残差连接后,超过约 6 层的 Transformer 训练难以收敛。", "residual", "R"),
    "R4": _claim("Residual connections shorten training by about 30%.", "残差连接能把训练周期缩短约 30%。",
                 "residual", "R"),
    "R5": _claim("Residual connections make the identity easy to learn (F(x) ≈ 0), so extra layers do not make "
                 "the model worse.", "残差连接让恒等映射容易学到(F(x) ≈ 0),因此多加层不会让模型变差。",
                 "residual", "R"),
    "N1": _claim("LayerNorm standardises each token's features to mean 0 and variance 1, then applies learned γ "
                 "and β.", "层归一化把每个词元的特征标准化为均值 0、方差 1,再乘以可学习的 γ 并加上 β。",
                 "normalization", "N"),
    "N2": _claim("The norm comes right after the residual add, LayerNorm(x + Sublayer(x)) (Post-LN): that is the "
                 "Transformer's arrangement.", "层归一化紧跟在残差相加之后,即 LayerNorm(x + Sublayer(x))(Post-LN),"
                 "这就是 Transformer 的结构。", "normalization", "N"),
    "N3": _claim("LayerNorm solves internal covariate shift (layer input distributions drifting during "
                 "training).", "层归一化解决了“内部协变量偏移”(训练中各层输入分布不断漂移)。", "normalization", "N"),
    "N4": _claim("Without LayerNorm deep (6+ layer) Transformers hardly converge; with it training is 30%+ "
                 "faster.", "没有层归一化,6 层以上的深层 Transformer 难以收敛;有了它训练速度可提升 30% 以上。",
                 "normalization", "N"),
    "N5": _claim("BatchNorm depends on the statistics of the batch and suits variable-length sequences badly; "
                 "LayerNorm works on each sample alone.", "批归一化依赖整批数据的统计量,不适合变长序列;"
                 "层归一化只在单个样本内计算。", "normalization", "N"),
    "E1": _claim("Encoder layers are identical: layer k's output feeds layer k+1 directly, with no projection "
                 "and the same d_model.", "编码器各层结构相同:第 k 层的输出直接作为第 k+1 层的输入,没有投影,"
                 "维度都是 d_model。", "encoder-stack", "E"),
    "E2": _claim("Lower encoder layers capture local features, higher layers global meaning.",
                 "编码器底层捕捉局部特征,高层捕捉全局语义。", "encoder-stack", "E"),
    "P1": _claim("The positional encoding is added once, to the input embedding, and not again in later layers.",
                 "位置编码只在输入层与词嵌入相加一次,后面的层不再添加。", "positional-encoding", "P"),
    "P2": _claim("Adding the positional encoding again at every layer would make training unstable.",
                 "如果在每一层都重复添加位置编码,可能导致训练不稳定。", "positional-encoding", "P"),
    "P3": _claim("With sinusoidal encodings PE(pos+k) is a linear function (a rotation) of PE(pos).",
                 "正弦位置编码中,PE(pos+k) 可以表示为 PE(pos) 的线性变换(旋转)。", "positional-encoding", "P"),
    "P4": _claim("Fixed sinusoidal encodings let a model handle sequences longer than any seen in training.",
                 "固定的正弦位置编码让模型能够外推到训练中没见过的更长序列。", "positional-encoding", "P"),
    "P5": _claim("Without positional information the model cannot use word order.",
                 "没有位置信息,模型就无法利用词序。", "positional-encoding", "P"),
    "D1": _claim("Decoder layers stack like encoder layers: layer k's output is layer k+1's input.",
                 "解码器层像编码器层一样堆叠:第 k 层的输出就是第 k+1 层的输入。", "decoder-stack", "D"),
    "D2": _claim("Every decoder layer's cross-attention reads the same encoder output: Q from the decoder, K and V "
                 "from the final encoder layer.", "每个解码器层的交叉注意力都读取同一份编码器输出:Q 来自解码器,"
                 "K 和 V 来自编码器最后一层。", "decoder-stack", "D"),
    "D3": _claim("Training runs every target position in parallel under a causal mask; inference generates one "
                 "token at a time.", "训练时借助因果掩码并行计算所有目标位置;推理时自回归地逐个生成词元。",
                 "training-vs-inference", "D"),
    "D4": _claim("Shallow decoder layers model local dependencies, deep ones long-range dependencies.",
                 "解码器浅层建模局部依赖,深层建模长距离依赖。", "training-vs-inference", "D"),
}

_MEASURES = {**residual.MEASURES, **depth.MEASURES, **norm.MEASURES, **stacks.MEASURES, **position.MEASURES}
assert set(_MEASURES) == set(CLAIMS), set(CLAIMS) ^ set(_MEASURES)


def measure(claim_id: str, store: RunStore | None = None) -> Verdict:
    """Measure one claim; `store` supplies the precomputed runs (None: zoo measurements only)."""
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}; claims: {', '.join(CLAIMS)}")
    return _MEASURES[claim_id](store)


def measure_all(store: RunStore | None = None) -> dict[str, Verdict]:
    return {claim_id: measure(claim_id, store) for claim_id in CLAIMS}


__all__ = ["CLAIMS", "VERDICTS", "Verdict", "measure", "measure_all"]
