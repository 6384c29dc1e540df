// placeholder until the formats land
