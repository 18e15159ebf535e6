"""The data layer: text in, token ids out. Tokenizers and reading text (`text`), the token cache
(`corpus`), streaming a large corpus (`streaming`) and splitting words on several cores
(`word_split`).

Imports: rnncli.base."""
